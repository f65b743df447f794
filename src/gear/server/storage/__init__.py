"""Where background jobs survive a restart: one contract (``base``), several backends."""
