"""Helpers shared by the tests (no tests here): scripted worlds built on the public
:class:`modelladder.ScriptedBackend`, fleets, and servers. Test modules import from here,
never from one another."""
