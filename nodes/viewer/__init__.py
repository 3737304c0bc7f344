"""`viewer`: a local web page of live frames, event and residual images, predictions and stats.

The node (:mod:`.node`) keeps only the newest input of each kind (:mod:`.state`, read from the
messages by :mod:`.inputs`) and serves it over HTTP from a background thread (:mod:`.server`,
the page itself in ``page.html``); images are drawn and encoded by :mod:`.images`.
"""

from respike.nodes.viewer.images import event_image, residual_image
from respike.nodes.viewer.node import ViewerNode

__all__ = ["ViewerNode", "event_image", "residual_image"]
