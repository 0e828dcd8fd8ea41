"""The kernel: the long-running process and its prototypal state machine.

``kernel.py`` (start-up in ordered ``init_*`` steps, mission threads,
shutdown), ``runners`` (the claim protocol every runner follows), ``streams``
(a mission's events, followed from anywhere), ``scheduling`` (model work on
the main thread, scheduled jobs), ``psm.py`` (one cognitive cycle = one
transaction), ``missions`` (the persistent queue), ``plans`` and ``tools``
(what a step may do),
``extend`` (self-extension: doesNotUnderstand becomes a mission),
``http_api`` (the OpenAI-compatible endpoint) and ``schema`` (the whole
root of well-known prototypes, assembled from each package's part).
"""
