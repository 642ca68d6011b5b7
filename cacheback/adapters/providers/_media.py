"""Images and audio in the question: read once, keyed exactly by their decoded bytes.

An inline image or audio clip (a ``data:`` URL, a base64 field) is keyed by the SHA-256 of
its decoded bytes, so the same picture sent as a data URL or re-wrapped keeps its key and a
different picture never shares one. A URL or a file id is keyed by its string: it is never
fetched to be keyed. The descriptor of a part (its kind, digest and the fields that change
the answer, such as ``detail`` or the audio ``format``) goes into the scope in place of the
part; the decoded bytes ride along for a semantic media tier that embeds them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MediaKind = Literal["image", "audio"]


class MediaError(ValueError):
    """A media part that cannot be read (bad base64, a missing source)."""


@dataclass(frozen=True, slots=True)
class MediaPart:
    """One image or audio part of the question.

    ``digest`` is ``sha256:<hex>`` of the decoded bytes, or ``url:<string>`` /
    ``file:<id>`` for a reference that was not fetched. ``data`` holds the decoded bytes of
    an inline part (None for a reference). ``attrs`` are the part's other fields that
    change the answer (OpenAI ``detail``, the audio ``format``, the media type).
    """

    kind: MediaKind
    digest: str
    data: bytes | None = field(default=None, repr=False, compare=False)
    attrs: tuple[tuple[str, str], ...] = ()

    @property
    def inline(self) -> bool:
        return self.data is not None

    def key(self) -> dict[str, Any]:
        """What the scope document holds for this part (its id is folded in after, so the
        media tier can key a near-identical part as the one it matched)."""
        return {"$media": self.kind, **dict(self.attrs)}


def _bytes_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _b64(data: Any, what: str) -> bytes:
    if not isinstance(data, str | bytes) or not data:
        raise MediaError(f"{what} has no data")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"{what} is not valid base64: {exc}") from exc


def _from_url(kind: MediaKind, url: Any, attrs: dict[str, str]) -> MediaPart:
    """A ``data:`` URL keyed by its decoded bytes; any other URL by its string."""
    if not isinstance(url, str) or not url:
        raise MediaError(f"{kind} part has no url")
    if url.startswith("data:"):
        header, sep, payload = url.partition(",")
        if not sep or ";base64" not in header:
            raise MediaError(f"{kind} data URL is not base64")
        data = _b64(payload, f"{kind} data URL")
        mime = header[5:].split(";", 1)[0]
        if mime:
            attrs = {**attrs, "media_type": mime}
        return MediaPart(kind, _bytes_digest(data), data, tuple(sorted(attrs.items())))
    return MediaPart(kind, "url:" + url, None, tuple(sorted(attrs.items())))


def _strings(part: Mapping[str, Any], *names: str) -> dict[str, str]:
    return {n: str(part[n]) for n in names if part.get(n) is not None}


def chat_image(part: Mapping[str, Any]) -> MediaPart:
    """OpenAI chat ``{"type": "image_url", "image_url": {"url": ..., "detail": ...}}``."""
    inner = part.get("image_url")
    if isinstance(inner, str):
        return _from_url("image", inner, {})
    if not isinstance(inner, Mapping):
        raise MediaError("image_url part has no image_url")
    return _from_url("image", inner.get("url"), _strings(inner, "detail"))


def chat_audio(part: Mapping[str, Any]) -> MediaPart:
    """OpenAI chat ``{"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}}``."""
    inner = part.get("input_audio")
    if not isinstance(inner, Mapping):
        raise MediaError("input_audio part has no input_audio")
    data = _b64(inner.get("data"), "input_audio")
    return MediaPart("audio", _bytes_digest(data), data, tuple(sorted(_strings(inner, "format").items())))


def responses_image(part: Mapping[str, Any]) -> MediaPart:
    """Responses ``{"type": "input_image", "image_url": ... | "file_id": ..., "detail": ...}``."""
    attrs = _strings(part, "detail")
    if part.get("image_url"):
        return _from_url("image", part.get("image_url"), attrs)
    if isinstance(part.get("file_id"), str) and part["file_id"]:
        return MediaPart("image", "file:" + part["file_id"], None, tuple(sorted(attrs.items())))
    raise MediaError("input_image part has neither image_url nor file_id")


def anthropic_image(part: Mapping[str, Any]) -> MediaPart:
    """Anthropic ``{"type": "image", "source": {"type": "base64" | "url" | "file", ...}}``."""
    source = part.get("source")
    if not isinstance(source, Mapping):
        raise MediaError("image block has no source")
    kind = source.get("type")
    if kind == "base64":
        data = _b64(source.get("data"), "image source")
        attrs = _strings(source, "media_type")
        return MediaPart("image", _bytes_digest(data), data, tuple(sorted(attrs.items())))
    if kind == "url":
        return _from_url("image", source.get("url"), {})
    if kind == "file" and isinstance(source.get("file_id"), str):
        return MediaPart("image", "file:" + source["file_id"], None)
    raise MediaError(f"image source of type {kind!r} is not supported")


MediaReader = Callable[[Mapping[str, Any]], MediaPart]

# Inline media larger than this is keyed on a worker thread (decoding and hashing 10 MB of
# base64 takes ~60 ms: too long for an event loop).
OFFLOAD_CHARS = 256 * 1024


def inline_media_chars(params: Mapping[str, Any]) -> int:
    """About how many characters of inline media the last item of ``messages``/``input``
    carries (cheap: it looks at that item's parts only)."""
    items = params.get("messages", params.get("input"))
    if not isinstance(items, list | tuple) or not items:
        return 0
    last = items[-1]
    content = last.get("content") if isinstance(last, Mapping) else getattr(last, "content", None)
    if not isinstance(content, list | tuple):
        return 0
    total = 0
    for part in content:
        if not isinstance(part, Mapping):
            continue
        for name in ("image_url", "input_audio", "source"):
            inner = part.get(name)
            if isinstance(inner, str):
                total += len(inner)
            elif isinstance(inner, Mapping):
                total += sum(len(v) for k, v in inner.items() if k in ("url", "data") and isinstance(v, str))
    return total


def modality(media: tuple[MediaPart, ...] | list[MediaPart]) -> str:
    """``text``, ``image``, ``audio`` or ``image+audio``: what the question carries."""
    if not media:  # almost always: no set to sort
        return "text"
    return "+".join(sorted({m.kind for m in media}))
