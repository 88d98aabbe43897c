"""First passwords for NativeAuthenticator, so nobody can claim a lab user's name first.

With sign-up open, whoever reaches /hub/signup before alice could take "alice" (a listed name
is authorized at once). The lab turns sign-up off; torchrig writes each new user's first
password (random, 16 characters, bcrypt as NativeAuthenticator stores it) into the hub's
database, prints it once to the admin, and the user changes it at /hub/change-password.
"""

from __future__ import annotations

import secrets
from pathlib import Path


def first_passwords(database: Path, users: list[str]) -> dict[str, str]:
    """user -> the password made now, for users who have none yet (others untouched)."""
    import bcrypt
    from nativeauthenticator.orm import UserInfo
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(f"sqlite:///{database}")
    UserInfo.__table__.create(engine, checkfirst=True)
    made: dict[str, str] = {}
    with Session(engine) as session:
        for name in users:
            if session.query(UserInfo).filter_by(username=name).first() is not None:
                continue
            password = secrets.token_urlsafe(12)
            hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
            session.add(UserInfo(username=name, password=hashed, is_authorized=True))
            made[name] = password
        session.commit()
    engine.dispose()
    return made


def forget(database: Path, user: str) -> None:
    """A removed user's password goes with them (a later user of that name starts fresh)."""
    if not database.exists():
        return
    from nativeauthenticator.orm import UserInfo
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    engine = create_engine(f"sqlite:///{database}")
    UserInfo.__table__.create(engine, checkfirst=True)
    with Session(engine) as session:
        session.query(UserInfo).filter_by(username=user).delete()
        session.commit()
    engine.dispose()
