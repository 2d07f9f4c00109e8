"""Demo data: three establishments of the Pays de la Loire and one user per role.

The demo passwords are public: never load the demo into a real deployment.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.accounts.service import add_establishment, add_user
from server.core.context import AppContext
from server.core.models import Establishment, User
from server.interfaces.senders import Hl7Sender, add_sender
from server.roster.service import load_demo_roster

ESTABLISHMENTS = [
    ("CHOLET", "Centre hospitalier de Cholet", "490000155"),
    ("SAUMUR", "Centre hospitalier de Saumur", "490000411"),
    ("CHATEAUBRIANT", "Centre hospitalier de Châteaubriant-Nozay-Pouancé", "440000313"),
]

# username, role, establishment, display name, professional id (RPPS)
USERS = [
    ("urgentiste", "urgentist", "CHOLET", "Dr Claire Martin", "10101010101"),
    ("manipulateur", "manipulator", "CHOLET", "Julien Bernard", None),
    ("urgentiste.saumur", "urgentist", "SAUMUR", "Dr Marc Petit", "10101010102"),
    ("manipulateur.saumur", "manipulator", "SAUMUR", "Sophie Durand", None),
    ("urgentiste.chateaubriant", "urgentist", "CHATEAUBRIANT", "Dr Lucie Morel", "10101010103"),
    ("manipulateur.chateaubriant", "manipulator", "CHATEAUBRIANT", "Hugo Laurent", None),
    ("radiologue", "radiologist", None, "Dr Paul Lefèvre", "10003456789"),
    ("radiologue.astreinte", "radiologist", None, "Dr Anne Roux", "10003456790"),
    ("coordinateur", "coordinator", None, "Nadia Girard", None),
    ("admin", "admin", None, "Administrateur plateforme", None),
]


def demo_password(username: str) -> str:
    return f"demo-{username.split('.')[0]}-2026"


async def load_demo(app: AppContext, db: AsyncSession) -> list[tuple[str, str, str]]:
    """Create what is missing; returns (username, password, role) for printing."""
    for code, name, finess in ESTABLISHMENTS:
        if not await db.scalar(select(Establishment).where(Establishment.code == code)):
            await add_establishment(app, db, code, name, finess)
    # Each site's patient record system may send over HL7 as DPI/<site code> (docs/hl7.md).
    for code, _name, _finess in ESTABLISHMENTS:
        sender = select(Hl7Sender.id).where(
            Hl7Sender.application == "DPI", Hl7Sender.facility == code
        )
        if not await db.scalar(sender):
            await add_sender(app, db, "DPI", code, code)
    logins = []
    for username, role, est, display, rpps in USERS:
        password = demo_password(username)
        if not await db.scalar(select(User).where(User.username == username)):
            await add_user(app, db, username, password, role, est, display, rpps)
        logins.append((username, password, role))
    ids = dict((await db.execute(select(User.username, User.id))).all())
    await load_demo_roster(db, ids, app.now().date())
    return logins
