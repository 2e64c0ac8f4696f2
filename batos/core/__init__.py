"""The object model and the image: what every other part of BAT OS stands on.

Owns ``UvmObject`` (slots, parents, methods held as source), the image
(opening ZODB storages by URI, root names), transactions with retry, the
integrity check, the metacognition log, the error hierarchy and the hooks
through which higher layers (the cognitive cycle, the skill index) are told
about messages nobody understands and methods that change. Nothing here
imports anything above it: ``lint-imports`` enforces that.
"""
