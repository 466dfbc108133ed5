"""(filled by the batchnorm family)"""
from __future__ import annotations

__all__: list[str] = []
