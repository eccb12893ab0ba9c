"""Users and roles. Deny by default: a platform user id without a row has no role at all."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from storage.db import transaction
from storage.roles import Role
from storage.tables import User


class UserStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def role(self, platform: str, user_id: int) -> Role | None:
        with Session(self.engine) as session:
            row = session.exec(select(User).where(User.platform == platform, User.platform_user_id == user_id)).first()
            return Role(row.role) if row else None

    def grant(self, platform: str, user_id: int, role: Role, *, at: datetime, display_name: str = "") -> None:
        with transaction(self.engine) as session:
            row = session.exec(
                select(User).where(User.platform == platform, User.platform_user_id == user_id).with_for_update()
            ).first()
            if row is None:
                row = User(platform=platform, platform_user_id=user_id, role=role.value, created_at=at, updated_at=at)
            row.role = role.value
            row.display_name = display_name[:128] or row.display_name
            row.updated_at = at
            session.add(row)

    def revoke(self, platform: str, user_id: int) -> bool:
        with transaction(self.engine) as session:
            row = session.exec(select(User).where(User.platform == platform, User.platform_user_id == user_id)).first()
            if row is None:
                return False
            session.delete(row)
            return True

    def all(self) -> list[User]:
        with Session(self.engine) as session:
            return list(session.exec(select(User).order_by(col(User.platform), col(User.platform_user_id))).all())
