"""Operations on one environment of the stack (preflight, preview, deploy, ...), returning data."""
