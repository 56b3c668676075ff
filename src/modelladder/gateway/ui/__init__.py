"""The dashboard: ``/ui`` on the gateway and ``modelladder ui`` over a store.

:mod:`~modelladder.gateway.ui.stats` computes the figures (pure functions over store reads),
:mod:`~modelladder.gateway.ui.routes` serves them as JSON next to the static page in
``static/`` (plain HTML, JS and CSS shipped in the package; the charts are SVG drawn by the
page's own script, nothing is fetched from another host).
"""

from modelladder.gateway.ui.routes import Dashboard, dashboard_app, install
from modelladder.gateway.ui.stats import Frontier

__all__ = ["Dashboard", "Frontier", "dashboard_app", "install"]
