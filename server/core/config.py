"""Settings, read once from the environment (see docs/configuration.md)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NotRequired, TypedDict


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


class IceServer(TypedDict):
    """One entry of ICE_SERVERS: the fields of WebRTC's RTCIceServer as aiortc takes
    them (docs/calls.md). The JSON is passed on as written, not validated here."""

    urls: str | list[str]
    username: NotRequired[str | None]
    credential: NotRequired[str | None]
    credentialType: NotRequired[str]


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///./var/teleimagerie.db"
    redis_url: str | None = None
    redis_prefix: str = "ti:"
    dicom_storage: Path = Path("./var/dicom")
    allowed_origins: tuple[str, ...] = ()
    public_url: str | None = None
    # An OHIF viewer installed beside the app, configured for our DICOMweb root
    # (docs/configuration.md "OHIF"): the viewer shows "Ouvrir dans OHIF" when set.
    ohif_url: str | None = None
    uid_root: str = "2.25"
    # The diagnostic reference levels of the site's medical physicist (docs/configuration.md).
    drl_file: Path | None = None
    ack_timeout_s: int = 300
    report_warn_s: int = 2700
    report_sla_s: int = 3600
    protocol_ack_timeout_s: int = 300
    critical_ack_timeout_s: int = 600
    # A stroke alert's own, shorter delays (docs/stroke.md "Escalation").
    stroke_ack_timeout_s: int = 60
    stroke_protocol_ack_timeout_s: int = 120
    stroke_report_warn_s: int = 600
    stroke_report_sla_s: int = 900
    # Peer review (docs/review.md): the share of signed reports drawn, and the draw's seed.
    peer_review_share: float = 0.05
    peer_review_seed: str = ""
    session_idle_s: int = 3600
    session_absolute_s: int = 12 * 3600
    secure_cookies: bool | None = None  # None: Secure when the request came over HTTPS
    max_body_bytes: int = 1024 * 1024
    max_dicom_body_bytes: int = 2 * 1024 * 1024 * 1024
    # The newest stored images kept in the page cache for their first read, in MB.
    dicom_cache_recent_mb: int = 1024
    max_ws_frame_bytes: int = 64 * 1024
    # A member of a killed process leaves presence at most ttl + interval after
    # its last heartbeat (server/live/roomhub.py presence_lag_s; docs/rooms.md).
    presence_ttl_s: int = 15
    presence_interval_s: float | None = None  # None: a third of the ttl
    # Keep long-lived objects out of the collector's full passes (server/live/roomhub.py
    # CollectorPolicy). On for `teleimagerie serve` (from_env); off in tests, which
    # run many apps in one process.
    gc_freeze: bool = False
    # Signing re-authentication (server/web/api/reports.py) counts failures per user.
    login_max_failures_user: int = 10
    # Logins: failures per (username, address) earn growing delays after the
    # first few; an address failing this often, whatever the usernames, waits
    # the rest of the window (server/accounts/throttle.py, docs/design.md "Accounts").
    login_max_failures_addr: int = 100
    login_window_s: int = 900
    login_free_failures: int = 3
    login_backoff_base_s: float = 1.0
    login_backoff_max_s: float = 900.0
    # Open sockets: how often their sessions' deadlines are checked locally, and
    # how often every session is checked again in the database (server/core/access.py).
    session_check_s: float = 0.5
    session_recheck_s: float = 5.0
    # DICOMweb requests reuse a session checked in SQL this long ago (0: never).
    session_cache_s: float = 1.0
    dicom_port: int = 11112
    dicom_ae_title: str = "TELEIMAGERIE"
    # The MLLP listener for the hospitals' HL7 v2 (docs/hl7.md "Inbound"): TLS when a
    # certificate is given, client certificates required when a CA is given too.
    hl7_port: int = 2575
    hl7_tls_cert: str | None = None
    hl7_tls_key: str | None = None
    hl7_tls_client_ca: str | None = None
    log_level: str = "INFO"
    # WebRTC consults (docs/calls.md): no STUN/TURN unless configured, never a public default.
    ice_servers: tuple[IceServer, ...] = ()
    call_max_participants: int = 4
    call_host_addresses: tuple[str, ...] = ()  # empty: every interface but loopback (aioice)
    # "forward": relay the encoded RTP (docs/calls.md "Forwarding"); "transcode": the
    # former decode + re-encode relay, kept for comparison (bench/calls.py).
    call_media: str = "forward"
    # Quality indicators (docs/calls.md): a call.quality frame every interval; a
    # participant whose audio has not arrived for call_no_media_s is flagged.
    call_quality_interval_s: float = 2.0
    call_no_media_s: float = 5.0
    # A call's media lives on the process holding its engine lease, renewed every
    # third of this; members on other processes learn it died within about this.
    call_lease_s: float = 6.0
    # A TURN server with the TURN REST API's shared secret (coturn: use-auth-secret):
    # each call's participants get credentials of their own, valid turn_ttl_s.
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl_s: int = 3600
    # RFC 9106 "low memory" profile by default; tests lower it to stay fast.
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4
    # Audit checkpoints (server/core/audit_anchor.py, docs/reports.md "Audit trail"): the
    # head of the chain, signed, in a file the database administrator cannot rewrite.
    audit_checkpoint_file: Path | None = None
    audit_checkpoint_key_file: Path | None = None
    audit_checkpoint_every_s: int = 60
    # A request (headers or body) from which nothing arrives for this long gets 408 and
    # its connection is closed (server/web/httpserver.py, docs/configuration.md).
    body_timeout_s: float = 60.0
    # The outbox (server/interfaces/outbox.py, docs/hl7.md "Outbound"): how long an
    # acknowledgement is awaited, the retry delays (doubling from base to max), how
    # long a message may stay unacknowledged before the coordinators hear of it, and
    # how often the sender looks for due messages.
    outbox_ack_timeout_s: float = 10.0
    outbox_retry_base_s: float = 1.0
    outbox_retry_max_s: float = 300.0
    outbox_escalate_after_s: float = 300.0
    outbox_poll_s: float = 0.1
    # The hospital PACS priors (server/priors/retrieval.py, docs/priors.md): how often the
    # worker looks for accepted exams whose priors are to be fetched.
    priors_poll_s: float = 1.0
    # Our Storage SCP, the destination of the C-MOVEs of a PACS set with ``--retrieve
    # move`` (docs/priors.md "C-MOVE"): its AE title (None: DICOM_AE_TITLE), the
    # address it listens on, and its port (0: none, a C-MOVE source then fails).
    priors_move_ae_title: str | None = None
    priors_move_bind: str = "0.0.0.0"  # noqa: S104 - the PACS is on the hospital network
    priors_move_port: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        d = cls()
        database_url = e.get("DATABASE_URL") or d.database_url
        return cls(
            database_url=normalise_database_url(database_url),
            redis_url=e.get("REDIS_URL") or None,
            redis_prefix=e.get("REDIS_PREFIX", d.redis_prefix),
            dicom_storage=Path(e.get("DICOM_STORAGE") or d.dicom_storage),
            allowed_origins=tuple(
                o.strip().rstrip("/") for o in e.get("ALLOWED_ORIGINS", "").split(",") if o.strip()
            ),
            public_url=(e.get("PUBLIC_URL") or "").rstrip("/") or None,
            ohif_url=(e.get("OHIF_URL") or "").rstrip("/") or None,
            uid_root=e.get("UID_ROOT") or d.uid_root,
            drl_file=Path(e["DRL_FILE"]) if e.get("DRL_FILE") else None,
            ack_timeout_s=_int(e, "ACK_TIMEOUT_S", d.ack_timeout_s),
            report_warn_s=_int(e, "REPORT_WARN_S", d.report_warn_s),
            report_sla_s=_int(e, "REPORT_SLA_S", d.report_sla_s),
            protocol_ack_timeout_s=_int(e, "PROTOCOL_ACK_TIMEOUT_S", d.protocol_ack_timeout_s),
            critical_ack_timeout_s=_int(e, "CRITICAL_ACK_TIMEOUT_S", d.critical_ack_timeout_s),
            stroke_ack_timeout_s=_int(e, "STROKE_ACK_TIMEOUT_S", d.stroke_ack_timeout_s),
            stroke_protocol_ack_timeout_s=_int(
                e, "STROKE_PROTOCOL_ACK_TIMEOUT_S", d.stroke_protocol_ack_timeout_s
            ),
            stroke_report_warn_s=_int(e, "STROKE_REPORT_WARN_S", d.stroke_report_warn_s),
            stroke_report_sla_s=_int(e, "STROKE_REPORT_SLA_S", d.stroke_report_sla_s),
            peer_review_share=_float(e, "PEER_REVIEW_SHARE", d.peer_review_share),
            peer_review_seed=e.get("PEER_REVIEW_SEED", d.peer_review_seed),
            session_idle_s=_int(e, "SESSION_IDLE_S", d.session_idle_s),
            session_absolute_s=_int(e, "SESSION_ABSOLUTE_S", d.session_absolute_s),
            session_cache_s=_float(e, "SESSION_CACHE_S", d.session_cache_s),
            secure_cookies=(
                None if e.get("SECURE_COOKIES") in (None, "") else _bool(e, "SECURE_COOKIES", False)
            ),
            max_body_bytes=_int(e, "MAX_BODY_BYTES", d.max_body_bytes),
            max_dicom_body_bytes=_int(e, "MAX_DICOM_BODY_BYTES", d.max_dicom_body_bytes),
            dicom_cache_recent_mb=_int(e, "DICOM_CACHE_RECENT_MB", d.dicom_cache_recent_mb),
            max_ws_frame_bytes=_int(e, "MAX_WS_FRAME_BYTES", d.max_ws_frame_bytes),
            presence_ttl_s=_int(e, "PRESENCE_TTL_S", d.presence_ttl_s),
            gc_freeze=_bool(e, "GC_FREEZE", True),
            login_max_failures_user=_int(e, "LOGIN_MAX_FAILURES_USER", d.login_max_failures_user),
            login_max_failures_addr=_int(e, "LOGIN_MAX_FAILURES_ADDR", d.login_max_failures_addr),
            login_window_s=_int(e, "LOGIN_WINDOW_S", d.login_window_s),
            login_free_failures=_int(e, "LOGIN_FREE_FAILURES", d.login_free_failures),
            login_backoff_max_s=_int(e, "LOGIN_BACKOFF_MAX_S", int(d.login_backoff_max_s)),
            dicom_port=_int(e, "DICOM_PORT", d.dicom_port),
            dicom_ae_title=e.get("DICOM_AE_TITLE") or d.dicom_ae_title,
            hl7_port=_int(e, "HL7_PORT", d.hl7_port),
            hl7_tls_cert=e.get("HL7_TLS_CERT") or None,
            hl7_tls_key=e.get("HL7_TLS_KEY") or None,
            hl7_tls_client_ca=e.get("HL7_TLS_CLIENT_CA") or None,
            log_level=e.get("LOG_LEVEL") or d.log_level,
            ice_servers=tuple(json.loads(e.get("ICE_SERVERS") or "[]")),
            call_max_participants=_int(e, "CALL_MAX_PARTICIPANTS", d.call_max_participants),
            call_host_addresses=tuple(
                a.strip() for a in e.get("CALL_HOST_ADDRESSES", "").split(",") if a.strip()
            ),
            call_media=e.get("CALL_MEDIA") or d.call_media,
            call_quality_interval_s=_float(e, "CALL_QUALITY_INTERVAL_S", d.call_quality_interval_s),
            call_no_media_s=_float(e, "CALL_NO_MEDIA_S", d.call_no_media_s),
            call_lease_s=_float(e, "CALL_LEASE_S", d.call_lease_s),
            turn_urls=tuple(u.strip() for u in e.get("TURN_URLS", "").split(",") if u.strip()),
            turn_secret=e.get("TURN_SECRET") or None,
            turn_ttl_s=_int(e, "TURN_TTL_S", d.turn_ttl_s),
            argon2_time_cost=_int(e, "ARGON2_TIME_COST", d.argon2_time_cost),
            argon2_memory_kib=_int(e, "ARGON2_MEMORY_KIB", d.argon2_memory_kib),
            argon2_parallelism=_int(e, "ARGON2_PARALLELISM", d.argon2_parallelism),
            **_audit_checkpoint_settings(e, d),
            body_timeout_s=_float(e, "BODY_TIMEOUT_S", d.body_timeout_s),
            outbox_ack_timeout_s=_float(e, "OUTBOX_ACK_TIMEOUT_S", d.outbox_ack_timeout_s),
            outbox_retry_base_s=_float(e, "OUTBOX_RETRY_BASE_S", d.outbox_retry_base_s),
            outbox_retry_max_s=_float(e, "OUTBOX_RETRY_MAX_S", d.outbox_retry_max_s),
            outbox_escalate_after_s=_float(e, "OUTBOX_ESCALATE_AFTER_S", d.outbox_escalate_after_s),
            outbox_poll_s=_float(e, "OUTBOX_POLL_S", d.outbox_poll_s),
            priors_poll_s=_float(e, "PRIORS_POLL_S", d.priors_poll_s),
            priors_move_ae_title=e.get("PRIORS_MOVE_AE_TITLE") or None,
            priors_move_bind=e.get("PRIORS_MOVE_BIND") or d.priors_move_bind,
            priors_move_port=_int(e, "PRIORS_MOVE_PORT", d.priors_move_port),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]  # fields checked at run time


class _AuditCheckpointSettings(TypedDict):
    """The audit checkpoint fields of `Settings`, typed so that they unpack into it."""

    audit_checkpoint_file: Path | None
    audit_checkpoint_key_file: Path | None
    audit_checkpoint_every_s: int


def _audit_checkpoint_settings(e: dict[str, str], d: Settings) -> _AuditCheckpointSettings:
    """AUDIT_CHECKPOINT_FILE, _KEY_FILE and _EVERY_S (docs/configuration.md)."""
    return {
        "audit_checkpoint_file": Path(e["AUDIT_CHECKPOINT_FILE"])
        if e.get("AUDIT_CHECKPOINT_FILE")
        else None,
        "audit_checkpoint_key_file": Path(e["AUDIT_CHECKPOINT_KEY_FILE"])
        if e.get("AUDIT_CHECKPOINT_KEY_FILE")
        else None,
        "audit_checkpoint_every_s": _int(e, "AUDIT_CHECKPOINT_EVERY_S", d.audit_checkpoint_every_s),
    }


def normalise_database_url(url: str) -> str:
    """Pick the async driver for the URLs people write by hand."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        return "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url
