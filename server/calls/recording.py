"""Consult recordings, when the establishment enables them (docs/calls.md "Recording").

Each participant's voice is written to its own Ogg/Opus file while they are in the
call (one MediaRecorder per audio track, fed by the same MediaRelay as the other
members): a file per voice needs no mixing on the server and survives members
joining and leaving at any time. Each file is a ``call_recordings`` row linked to
the exam; it is served only to people who may see the exam, and every download is
recorded in the audit trail.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from aiortc.contrib.media import MediaRecorder
from aiortc.mediastreams import MediaStreamTrack
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from server.core.config import Settings
from server.core.context import AppContext
from server.core.models import Base, Establishment, Exam, new_id


class CallRecording(Base):
    """One participant's voice during one call of an exam."""

    __tablename__ = "call_recordings"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    exam_id: Mapped[str] = mapped_column(ForeignKey("exams.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    path: Mapped[str] = mapped_column(String(500))  # relative to recordings_dir
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    size: Mapped[int | None] = mapped_column(Integer)


def recordings_dir(settings: Settings) -> Path:
    """Beside the DICOM store, on the same (shared) storage."""
    return Path(settings.dicom_storage).parent / "call-recordings"


async def recording_enabled(app: AppContext, exam_id: str) -> bool:
    async with app.db() as db:
        options = await db.scalar(
            select(Establishment.settings)
            .join(Exam, Exam.establishment_id == Establishment.id)
            .where(Exam.id == exam_id)
        )
    return bool((options or {}).get("record_calls"))


class VoiceRecorder:
    """A MediaRecorder for one track, with its row."""

    def __init__(self, row_id: str, path: Path, recorder: MediaRecorder) -> None:
        self.row_id, self.path, self.recorder = row_id, path, recorder

    @classmethod
    async def start(
        cls, app: AppContext, exam_id: str, user_id: int, track: MediaStreamTrack
    ) -> VoiceRecorder:
        row_id = new_id()
        relative = Path(exam_id) / f"{row_id}.ogg"
        path = recordings_dir(app.settings) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        async with app.db() as db:
            db.add(
                CallRecording(
                    id=row_id,
                    exam_id=exam_id,
                    user_id=user_id,
                    path=str(relative),
                    started_at=app.now(),
                )
            )
            await db.commit()
        recorder = MediaRecorder(str(path), format="ogg")
        recorder.addTrack(track)
        await recorder.start()
        return cls(row_id, path, recorder)

    async def stop(self, app: AppContext) -> None:
        await self.recorder.stop()
        async with app.db() as db:
            row = await db.get(CallRecording, self.row_id)
            if row is not None:
                row.ended_at = app.now()
                row.size = self.path.stat().st_size if self.path.exists() else 0
                await db.commit()


def recording_json(row: CallRecording) -> dict[str, object]:
    return {
        "id": row.id,
        "user": row.user_id,
        "started_at": row.started_at.isoformat().replace("+00:00", "Z"),
        "ended_at": row.ended_at.isoformat().replace("+00:00", "Z") if row.ended_at else None,
        "size": row.size,
        "url": f"/api/call-recordings/{row.id}",
    }
