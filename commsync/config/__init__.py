"""Reading configuration-like files: YAML with positions, JSON Schema checks, file trees (a
directory or a git commit), the data files shipped with commsync, and commsync.yaml → Settings.

Used alike by `repo/` (the operator's repository) and `catalog/` (registered defaults).
"""
