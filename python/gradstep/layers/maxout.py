"""(filled by the maxout family)"""
from __future__ import annotations

__all__: list[str] = []
