"""The ``teleimagerie`` command (docs/api.md "Command line"): it parses arguments
and calls the services; each command builds only the services it uses
(server/composition.py)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from server.composition import core_context
from server.core.config import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from server.core.context import AppContext
    from server.core.models import User


def _run(settings: Settings, job: Callable[[AppContext], Awaitable[int]]) -> int:
    async def main() -> int:
        async with core_context(settings) as app:
            return await job(app)

    return asyncio.run(main())


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from server.web.serve import serve

    serve(settings, args.host, args.port)
    return 0


def cmd_migrate(_args: argparse.Namespace, settings: Settings) -> int:
    from server.core.migrate import upgrade

    upgrade(settings.database_url)
    print("schema is up to date")
    return 0


def cmd_worker(_args: argparse.Namespace, settings: Settings) -> int:
    from server.worker import run_worker

    asyncio.run(run_worker(settings))
    return 0


def cmd_establishment_add(args: argparse.Namespace, settings: Settings) -> int:
    from server.accounts.service import add_establishment

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            est = await add_establishment(app, db, args.code, args.name, args.finess)
            await db.commit()
            print(f"establishment {est.code} added")
        return 0

    return _run(settings, job)


def cmd_establishment_record(args: argparse.Namespace, settings: Settings) -> int:
    from server.accounts.service import set_record_with_report
    from server.core import audit

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            est = await set_record_with_report(db, args.code, args.state == "on")
            await audit.record(
                db,
                action="establishment.settings",
                username="cli",
                at=app.now(),
                detail={"establishment": est.code, "record_with_report": args.state == "on"},
            )
            await db.commit()
            print(
                f"{est.code}: the exam's record {'goes' if args.state == 'on' else 'does not go'}"
                " with the report"
            )
        return 0

    return _run(settings, job)


def cmd_user_add(args: argparse.Namespace, settings: Settings) -> int:
    from server.accounts.service import add_user

    password = sys.stdin.readline().rstrip("\r\n")

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            user = await add_user(
                app,
                db,
                args.username,
                password,
                args.role,
                args.establishment,
                args.display_name,
                args.professional_id,
            )
            await db.commit()
            print(f"user {user.username} ({user.role}) added")
        return 0

    return _run(settings, job)


# -- accounts: passwords, deactivation, sessions (docs/design.md "Accounts") --


def _account_job(
    settings: Settings, username: str, action: str, change: Callable[..., Awaitable[int]]
) -> int:
    """Apply ``change(app, db, user)`` to a user, audit it as ``action`` (from the
    CLI: no user, ``via: cli``), commit, and close the user's open sockets."""
    from server.accounts.service import announce, find_user
    from server.core import audit

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            user = await find_user(db, username)
            ended = await change(app, db, user)
            await audit.record(
                db,
                action=action,
                username="cli",
                detail={"username": user.username, "sessions_ended": ended, "via": "cli"},
            )
            await db.commit()
            user_id = user.id
        await announce(app, user_id, reason=action.replace("account.", "account "))
        print(f"{action.removeprefix('account.')}: {username}; {ended} session(s) ended")
        return 0

    return _run(settings, job)


def cmd_user_passwd(args: argparse.Namespace, settings: Settings) -> int:
    from server.accounts.service import set_password

    password = sys.stdin.readline().rstrip("\r\n")

    async def change(app: AppContext, db: AsyncSession, user: User) -> int:
        return await set_password(app, db, user, password)

    return _account_job(settings, args.username, "account.password_reset", change)


def cmd_user_active(args: argparse.Namespace, settings: Settings) -> int:
    from server.accounts.service import set_active

    active = args.action == "activate"

    async def change(app: AppContext, db: AsyncSession, user: User) -> int:
        return await set_active(app, db, user, active)

    return _account_job(settings, args.username, f"account.{args.action}", change)


def cmd_user_logout_all(args: argparse.Namespace, settings: Settings) -> int:
    from server.accounts.service import revoke_sessions

    async def change(app: AppContext, db: AsyncSession, user: User) -> int:
        return await revoke_sessions(app, db, user.id)

    return _account_job(settings, args.username, "account.logout_all", change)


def cmd_user_role(args: argparse.Namespace, settings: Settings) -> int:
    from server.accounts.service import set_role

    async def change(app: AppContext, db: AsyncSession, user: User) -> int:
        return await set_role(app, db, user, args.role, args.establishment)

    return _account_job(settings, args.username, "account.role", change)


def add_account_commands(user: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    passwd = user.add_parser("passwd", help="set a user's password (read from stdin)")
    passwd.add_argument("username")
    passwd.set_defaults(func=cmd_user_passwd)
    for action, text in (
        ("deactivate", "deactivate a user: every session ends"),
        ("activate", "reactivate a user"),
    ):
        sub = user.add_parser(action, help=text)
        sub.add_argument("username")
        sub.set_defaults(func=cmd_user_active)
    logout_all = user.add_parser("logout-all", help="end every session of a user")
    logout_all.add_argument("username")
    logout_all.set_defaults(func=cmd_user_logout_all)
    role = user.add_parser("role", help="move a user to another role or establishment")
    role.add_argument("username")
    role.add_argument("--role", required=True)
    role.add_argument("--establishment", default=None)
    role.set_defaults(func=cmd_user_role)


# -- end of accounts --


def cmd_demo(_args: argparse.Namespace, settings: Settings) -> int:
    from server.demo import load_demo

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            logins = await load_demo(app, db)
            await db.commit()
        print("Demo logins (public demo passwords: never use them in production):")
        for username, password, role in logins:
            print(f"  {role:<12} {username:<28} {password}")
        return 0

    return _run(settings, job)


def cmd_audit_verify(_args: argparse.Namespace, settings: Settings) -> int:
    """The chain from its first row, then the chain against the latest checkpoint
    (docs/reports.md "Audit trail"): exit 1 naming what is wrong, 2 when the
    checkpoints cannot be read as configured."""
    from server.core.audit import verify
    from server.core.audit_anchor import (
        AnchorError,
        AnchorProblem,
        check_against,
        configured,
        read_checkpoints,
    )

    try:
        conf = configured(settings)
        checkpoints = read_checkpoints(*conf) if conf is not None else []
    except AnchorError as exc:
        print(f"teleimagerie: {exc}", file=sys.stderr)
        return 2
    except AnchorProblem as exc:
        print(f"audit checkpoints BROKEN: {exc}", file=sys.stderr)
        return 1

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            count, head, broken = await verify(db)
            if broken is not None:
                print(
                    f"audit chain BROKEN at row {broken.row_id}: {broken.reason}; "
                    f"{count} rows before it are intact",
                    file=sys.stderr,
                )
                return 1
            if checkpoints:
                try:
                    await check_against(db, checkpoints[-1])
                except AnchorProblem as exc:
                    print(str(exc), file=sys.stderr)
                    return 1
        print(f"audit chain intact: {count} rows, head {head}")
        if conf is None:
            print(
                "no AUDIT_CHECKPOINT_FILE: deleting the newest rows cannot be detected",
                file=sys.stderr,
            )
        elif checkpoints:
            last = checkpoints[-1]
            print(f"latest checkpoint holds: row {last.row} of {last.at} (line {last.n})")
        else:
            print("no checkpoint taken yet: run 'teleimagerie audit checkpoint'")
        return 0

    return _run(settings, job)


def cmd_audit_checkpoint(_args: argparse.Namespace, settings: Settings) -> int:
    """Append a signed checkpoint of the chain's head (for cron; the worker takes
    them on its own)."""
    from server.core.audit_anchor import AnchorError, AnchorProblem, checkpoint

    if settings.audit_checkpoint_file is None:
        print("teleimagerie: AUDIT_CHECKPOINT_FILE is not set", file=sys.stderr)
        return 2

    async def job(app: AppContext) -> int:
        try:
            line = await checkpoint(app)
        except AnchorError as exc:
            print(f"teleimagerie: {exc}", file=sys.stderr)
            return 2
        except AnchorProblem as exc:
            print(f"audit checkpoints BROKEN, nothing written: {exc}", file=sys.stderr)
            return 1
        print(line if line is not None else "the head has not moved since the last checkpoint")
        return 0

    return _run(settings, job)


def cmd_dicom(args: argparse.Namespace, settings: Settings) -> int:
    from server.composition import gateway_context
    from server.core.logs import configure_logging
    from server.gateway.service import serve

    async def main() -> None:
        configure_logging(settings.log_level)
        async with gateway_context(settings) as app:
            await serve(app, args.host, args.port, args.ae_title)

    asyncio.run(main())
    return 0


def cmd_ae_add(args: argparse.Namespace, settings: Settings) -> int:
    from server.gateway.aes import add_ae

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            ae = await add_ae(
                app, db, args.ae_title, args.establishment, args.host, args.description
            )
            await db.commit()
            print(f"AE title {ae.ae_title} registered for {args.establishment.upper()}")
        return 0

    return _run(settings, job)


def cmd_ae_list(_args: argparse.Namespace, settings: Settings) -> int:
    from server.gateway.aes import list_aes

    async def job(app: AppContext) -> int:
        async with app.read() as db:
            for ae, code in await list_aes(db):
                print(f"{ae.ae_title:<16} {code:<12} {ae.host or '*':<20} {ae.description or ''}")
        return 0

    return _run(settings, job)


# -- hl7: the inbound MLLP listener and its senders (docs/hl7.md "Inbound") --


def cmd_hl7_serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.processes > 1:
        return _hl7_processes(args, settings)
    return _hl7_serve(args, settings, reuse_port=False)


def _hl7_serve(args: argparse.Namespace, settings: Settings, reuse_port: bool) -> int:
    from server.core.collector import tune_for_serving
    from server.core.logs import configure_logging
    from server.interfaces.listener import serve

    async def main() -> None:
        configure_logging(settings.log_level)
        async with core_context(settings) as app:
            tune_for_serving()
            await serve(app, args.host, args.port, reuse_port=reuse_port)

    try:  # the loop uvicorn runs the web process on, where it is installed
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return 0


def _hl7_processes(args: argparse.Namespace, settings: Settings) -> int:
    """``--processes N``: N listeners on one port (SO_REUSEPORT: the kernel spreads
    the connections among them), each with its own database pool and its own group
    commits; SIGTERM or SIGINT is passed on to each (docs/hl7.md "Connection")."""
    children = []
    for _ in range(args.processes):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _hl7_serve(args, settings, reuse_port=True)
            finally:
                os._exit(code)
        children.append(pid)

    def stop(_sig: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    for child in children:
        _pid, status = os.waitpid(child, 0)
        code = code or os.waitstatus_to_exitcode(status)
    return code


def cmd_hl7_add_sender(args: argparse.Namespace, settings: Settings) -> int:
    from server.core import audit
    from server.interfaces.senders import add_sender

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            sender = await add_sender(
                app, db, args.application, args.facility, args.establishment, args.cert_subject
            )
            await audit.record(
                db,
                action="hl7.sender.add",
                username="cli",
                at=app.now(),
                detail={
                    "application": sender.application,
                    "facility": sender.facility,
                    "establishment": args.establishment.upper(),
                    "via": "cli",
                },
            )
            await db.commit()
            print(
                f"HL7 sender {sender.application}/{sender.facility} registered for "
                f"{args.establishment.upper()}"
            )
        return 0

    return _run(settings, job)


def cmd_hl7_list_senders(_args: argparse.Namespace, settings: Settings) -> int:
    from server.interfaces.senders import list_senders

    async def job(app: AppContext) -> int:
        async with app.read() as db:
            for sender, code in await list_senders(db):
                print(
                    f"{sender.application:<20} {sender.facility:<20} {code:<12} "
                    f"{sender.cert_subject or ''}"
                )
        return 0

    return _run(settings, job)


def add_hl7_in_commands(
    hl7: argparse.ArgumentParser, actions: argparse._SubParsersAction[argparse.ArgumentParser]
) -> None:
    hl7.add_argument("--host", default="0.0.0.0")  # noqa: S104 - the hospital network
    hl7.add_argument("--port", type=int, default=None, help="default: HL7_PORT")
    hl7.add_argument("--processes", type=int, default=1, help="listener processes sharing the port")
    hl7.set_defaults(func=cmd_hl7_serve)
    add = actions.add_parser("add-sender", help="register a sending application/facility")
    add.add_argument("--application", required=True, help="MSH-3")
    add.add_argument("--facility", required=True, help="MSH-4")
    add.add_argument("--establishment", required=True)
    add.add_argument("--cert-subject", default=None, help="CN of its TLS client certificate")
    add.set_defaults(func=cmd_hl7_add_sender)
    actions.add_parser("list-senders", help="the registered senders").set_defaults(
        func=cmd_hl7_list_senders
    )


# -- end of hl7 in --


# -- hl7 destinations (docs/hl7.md "Outbound") ---------------------------------------


def cmd_hl7_add_destination(args: argparse.Namespace, settings: Settings) -> int:
    from server.interfaces.outbox import DestinationError, add_destination

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            try:
                dest = await add_destination(
                    db,
                    establishment=args.establishment,
                    name=args.name,
                    host=args.host,
                    port=args.port,
                    kinds=args.kinds,
                    now=app.now(),
                    receiving_application=args.receiving_application,
                    receiving_facility=args.receiving_facility,
                    tls=args.tls,
                    tls_ca_file=args.tls_ca,
                    tls_cert_file=args.tls_cert,
                    tls_key_file=args.tls_key,
                )
            except DestinationError as exc:
                print(f"teleimagerie: {exc}", file=sys.stderr)
                return 2
            await db.commit()
        tls = " over TLS" if dest.tls else ""
        print(f"destination {dest.name} ({dest.kinds}) at {dest.host}:{dest.port}{tls}")
        return 0

    return _run(settings, job)


def cmd_hl7_list_destinations(_args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from server.core.models import Establishment, Hl7Destination

    async def job(app: AppContext) -> int:
        async with app.read() as db:
            rows = await db.execute(
                select(Hl7Destination, Establishment.code)
                .join(Establishment, Establishment.id == Hl7Destination.establishment_id)
                .order_by(Establishment.code, Hl7Destination.name)
            )
            for dest, code in rows:
                tls = "tls" if dest.tls else "plain"
                state = "" if dest.active else " (inactive)"
                print(
                    f"{code:<12} {dest.name:<16} {dest.host}:{dest.port:<6} {tls:<5} "
                    f"{dest.kinds}{state}"
                )
        return 0

    return _run(settings, job)


def add_hl7_destination_commands(hl7: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    add = hl7.add_parser("add-destination", help="a hospital system that receives our reports")
    add.add_argument("--establishment", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--host", required=True)
    add.add_argument("--port", type=int, required=True)
    add.add_argument("--kinds", default="oru,mdm", help="oru, mdm or both (comma-separated)")
    add.add_argument("--receiving-application", default=None, help="MSH-5 (default: the name)")
    add.add_argument("--receiving-facility", default=None, help="MSH-6 (default: the site code)")
    add.add_argument("--tls", action="store_true", help="MLLP over TLS")
    add.add_argument("--tls-ca", default=None, help="CA file that signs the destination")
    add.add_argument("--tls-cert", default=None, help="our client certificate, if asked")
    add.add_argument("--tls-key", default=None, help="its private key")
    add.set_defaults(func=cmd_hl7_add_destination)
    hl7.add_parser("list-destinations", help="the registered destinations").set_defaults(
        func=cmd_hl7_list_destinations
    )


# -- pacs: each establishment's PACS for the priors (docs/priors.md) -----------------


def cmd_pacs_set(args: argparse.Namespace, settings: Settings) -> int:
    from server.priors.sources import Dicomweb, set_source

    dicomweb = None
    if args.dicomweb is not None:
        # The password or token: read from stdin, never on the command line (ps, history).
        secret = sys.stdin.readline().rstrip("\r\n") if args.auth != "none" else None
        dicomweb = Dicomweb(args.dicomweb, args.auth, args.user, secret or None, args.ca_file)

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            source = await set_source(
                app,
                db,
                args.establishment,
                ae=args.ae_title,
                host=args.host,
                port=args.port,
                calling_ae=args.calling_ae_title or settings.dicom_ae_title,
                retrieve=args.retrieve,
                dicomweb=dicomweb,
                years=args.years,
                max_studies=args.max_studies,
                timeout_s=args.timeout,
            )
            await db.commit()
            print(f"PACS {_pacs_where(source)} set for {args.establishment.upper()}")
        return 0

    return _run(settings, job)


def _pacs_where(s: Any) -> str:
    if s.dicomweb_url:
        return f"DICOMweb {s.dicomweb_url} (auth {s.dicomweb_auth})"
    return f"{s.ae_title} at {s.host}:{s.port} as {s.calling_ae_title}, C-{s.retrieve.upper()}"


def cmd_pacs_list(_args: argparse.Namespace, settings: Settings) -> int:
    from server.priors.sources import list_sources

    async def job(app: AppContext) -> int:
        async with app.read() as db:
            for s, code in await list_sources(db):
                if s.dicomweb_url:
                    where = f"{'DICOMweb':<16} {s.dicomweb_url} auth {s.dicomweb_auth}"
                else:
                    where = (
                        f"{s.ae_title:<16} {s.host}:{s.port:<6} as {s.calling_ae_title:<16} "
                        f"C-{s.retrieve.upper()}"
                    )
                print(f"{code:<12} {where} {s.years} years, {s.max_studies} studies")
        return 0

    return _run(settings, job)


def cmd_pacs_remove(args: argparse.Namespace, settings: Settings) -> int:
    from server.priors.sources import remove_source

    async def job(app: AppContext) -> int:
        async with app.db() as db:
            removed = await remove_source(db, args.establishment)
            await db.commit()
        if not removed:
            print(f"teleimagerie: {args.establishment.upper()} has no PACS", file=sys.stderr)
            return 2
        print(f"PACS of {args.establishment.upper()} removed")
        return 0

    return _run(settings, job)


def add_pacs_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pacs = sub.add_parser(
        "pacs", help="the hospitals' PACS the priors are fetched from (DICOM or DICOMweb)"
    ).add_subparsers(dest="action", required=True)
    pset = pacs.add_parser("set", help="set (or replace) an establishment's PACS")
    pset.add_argument("--establishment", required=True)
    pset.add_argument("--ae-title", default=None, help="a DICOM PACS's AE title (called)")
    pset.add_argument("--host", default=None)
    pset.add_argument("--port", type=int, default=None)
    pset.add_argument(
        "--calling-ae-title", default=None, help="ours, as the PACS knows us (DICOM_AE_TITLE)"
    )
    pset.add_argument(
        "--retrieve",
        choices=["get", "move"],
        default="get",
        help="C-GET, or C-MOVE to our Storage SCP (PRIORS_MOVE_AE_TITLE, PRIORS_MOVE_PORT)",
    )
    pset.add_argument("--dicomweb", default=None, metavar="URL", help="a DICOMweb PACS's root")
    pset.add_argument(
        "--auth",
        choices=["none", "basic", "bearer"],
        default="none",
        help="DICOMweb: how we authenticate; the password or token is read from stdin",
    )
    pset.add_argument("--user", default=None, help="DICOMweb: the user, for --auth basic")
    pset.add_argument("--ca-file", default=None, help="DICOMweb: the CA its certificate is from")
    pset.add_argument("--years", type=int, default=5, help="how far back a prior may be")
    pset.add_argument("--max-studies", type=int, default=3, help="priors fetched per exam")
    pset.add_argument("--timeout", type=int, default=30, help="seconds per DICOM exchange")
    pset.set_defaults(func=cmd_pacs_set)
    pacs.add_parser("list", help="the PACS of each establishment").set_defaults(func=cmd_pacs_list)
    premove = pacs.add_parser("remove", help="stop fetching priors for an establishment")
    premove.add_argument("--establishment", required=True)
    premove.set_defaults(func=cmd_pacs_remove)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="teleimagerie", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="the web process (HTTP, WebSocket, DICOMweb)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("worker", help="escalation and SLA timers").set_defaults(func=cmd_worker)
    sub.add_parser("migrate", help="create or upgrade the schema").set_defaults(func=cmd_migrate)
    sub.add_parser("demo", help="load demo data and print logins").set_defaults(func=cmd_demo)

    est = sub.add_parser("establishment", help="hospital sites").add_subparsers(
        dest="action", required=True
    )
    est_add = est.add_parser("add", help="add a hospital site")
    est_add.add_argument("code")
    est_add.add_argument("name")
    est_add.add_argument("--finess", default=None)
    est_add.set_defaults(func=cmd_establishment_add)
    est_record = est.add_parser(
        "record-with-report", help="send the exam's record (PDF/A) with each report"
    )
    est_record.add_argument("code")
    est_record.add_argument("state", choices=["on", "off"])
    est_record.set_defaults(func=cmd_establishment_record)

    user = sub.add_parser("user", help="accounts").add_subparsers(dest="action", required=True)
    user_add = user.add_parser("add", help="add a user; the password is read from stdin")
    user_add.add_argument("username")
    user_add.add_argument("--role", required=True)
    user_add.add_argument("--establishment", default=None)
    user_add.add_argument("--display-name", default=None)
    user_add.add_argument("--professional-id", default=None, help="RPPS number")
    user_add.set_defaults(func=cmd_user_add)
    add_account_commands(user)

    dicom = sub.add_parser("dicom", help="the DICOM listener for scanners (C-STORE, worklist)")
    dicom.add_argument("--host", default="0.0.0.0")  # noqa: S104 - the hospital network
    dicom.add_argument("--port", type=int, default=None, help="default: DICOM_PORT")
    dicom.add_argument("--ae-title", default=None, help="default: DICOM_AE_TITLE")
    dicom.set_defaults(func=cmd_dicom)

    ae = sub.add_parser("ae", help="modality AE titles").add_subparsers(
        dest="action", required=True
    )
    ae_add = ae.add_parser("add", help="register a calling AE title for an establishment")
    ae_add.add_argument("ae_title")
    ae_add.add_argument("--establishment", required=True)
    ae_add.add_argument("--host", default=None, help="IP, CIDR network or host name")
    ae_add.add_argument("--description", default=None)
    ae_add.set_defaults(func=cmd_ae_add)
    ae.add_parser("list", help="the registered AE titles").set_defaults(func=cmd_ae_list)
    add_pacs_commands(sub)

    hl7 = sub.add_parser(
        "hl7", help="HL7 v2: the MLLP listener (identities, orders), senders and destinations"
    )
    hl7_actions = hl7.add_subparsers(dest="action", required=False)
    add_hl7_in_commands(hl7, hl7_actions)
    add_hl7_destination_commands(hl7_actions)

    aud = sub.add_parser("audit", help="the audit trail").add_subparsers(
        dest="action", required=True
    )
    aud.add_parser("verify", help="check the hash chain; non-zero naming the first broken row")
    aud.choices["verify"].set_defaults(func=cmd_audit_verify)
    aud.add_parser(
        "checkpoint", help="append a signed checkpoint of the chain's head (AUDIT_CHECKPOINT_FILE)"
    ).set_defaults(func=cmd_audit_checkpoint)
    return parser


def main(argv: list[str] | None = None) -> int:
    from server.accounts.service import AccountError

    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    try:
        return int(args.func(args, settings))
    except AccountError as exc:
        print(f"teleimagerie: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
