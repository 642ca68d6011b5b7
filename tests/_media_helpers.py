"""Small real media for the multimodal tests: PNG pictures (Pillow) and WAV clips (``wave``)."""

from __future__ import annotations

import base64
import io
import math
import struct
import wave


def png(colour: tuple[int, int, int], size: int = 48, *, stripe: bool = False) -> bytes:
    """A PNG of one colour (with a white stripe if asked)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), colour)
    if stripe:
        ImageDraw.Draw(image).rectangle((0, size // 3, size, size // 2), fill=(255, 255, 255))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def wav(freq: float, seconds: float = 0.5, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV clip of a sine tone."""
    frames = b"".join(
        struct.pack("<h", int(12000 * math.sin(2 * math.pi * freq * i / rate)))
        for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{b64(data)}"
