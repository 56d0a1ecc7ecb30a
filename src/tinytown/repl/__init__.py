"""The interactive console on a town (spec section 7): ``tt run`` in a terminal, ``tt attach``.

Modules: :mod:`.app` (entry points), :mod:`.core` (the read-run loop), :mod:`.session` (the
prompt in a worker thread), :mod:`.console` (printing above the prompt), :mod:`.completer`,
:mod:`.toolbar`, :mod:`.snapshot` (what the prompt thread may read), :mod:`.feed` (events as
they happen), :mod:`.commands` (``broadcast``, ``watch``, ``help``).

The CLI does not import this package: ``tt attach`` and ``tt run`` reach the REPL through
the console :mod:`tinytown.entry` hands to the CLI.
"""
