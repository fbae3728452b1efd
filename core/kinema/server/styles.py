"""The server's ``GET /v1/styles``: the style presets a ``style`` field may name, the server's users' own included.

Hosts (OBS, Blender) list these in their Style menus instead of a copy that
misses the user's presets. A user style's file path stays on the server: the
answer says only that it is the user's.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from kinema.errors import InvalidRequestError
from kinema.home import kinema_home
from kinema.server.errors import APIError, error_responses
from kinema.styles import list_styles


class StyleInfo(BaseModel):
    id: str
    object: Literal["style"] = "style"
    description: str
    source: Literal["built-in", "user"]


class StyleList(BaseModel):
    object: Literal["list"] = "list"
    data: list[StyleInfo]


router = APIRouter()


@router.get("/styles", response_model=StyleList, tags=["kinema"], responses=error_responses(500))
def list_style_presets() -> dict:
    """Style presets (``style`` values for ``POST /v1/videos``): the built-ins and this server's own."""
    try:
        styles = list_styles()
    except InvalidRequestError as error:
        # A broken user style file: say which, without the server's paths.
        reason = str(error).replace(str(kinema_home() / "styles"), "the server's styles folder")
        raise APIError(
            500,
            f"{reason}; fix or remove it (`kinema styles` on the server shows the styles it can read)",
            type="server_error",
            code="broken_style",
        ) from None
    data = [
        {
            "id": style.name,
            "description": style.description,
            "source": "built-in" if style.source == "built-in" else "user",
        }
        for style in styles.values()
    ]
    return {"object": "list", "data": data}
