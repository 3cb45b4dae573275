"""placeholder"""
FORMATS = ("text", "claude-code", "codex", "gemini", "opencode", "pi")
