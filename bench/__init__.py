"""Benchmarks for prelabel.

Every module in this package that defines ``async def run() -> None`` is a
benchmark; ``python -m bench.run`` discovers and runs them, and each one
stores its figures through :mod:`bench.results`.
"""
