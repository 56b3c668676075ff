"""An OpenAI-compatible HTTP gateway in front of the ladder (``modelladder serve``).

Point any OpenAI client at it and each request runs smallest-first under the contract its
``tools`` / ``response_format`` imply, with every attempt recorded in the trace store::

    from openai import OpenAI
    client = OpenAI(base_url="http://127.0.0.1:8080/v1", api_key="unused-on-loopback")
    client.chat.completions.create(model="ladder", messages=[{"role": "user", "content": "Hi"}])
"""

from modelladder.gateway.app import Gateway, GatewayConfig, create_app

__all__ = ["Gateway", "GatewayConfig", "create_app"]
