"""Length penalties, which depend on token counts the trainer knows rather than on text."""


def soft_overlong_penalty(num_tokens: int, max_tokens: int, cache_tokens: int) -> float:
    """DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13).

    0 while ``num_tokens <= max_tokens - cache_tokens``; then falls linearly to -1 at
    ``max_tokens``; -1 beyond. ``cache_tokens = 0`` disables it.
    """
    if cache_tokens <= 0:
        return 0.0
    soft_start = max_tokens - cache_tokens
    if num_tokens <= soft_start:
        return 0.0
    if num_tokens <= max_tokens:
        return (soft_start - num_tokens) / cache_tokens
    return -1.0
