"""Services: one SQL concern each, taking a connection and a definition, returning a
``response.ServiceResponse``. Import each from its module (``services.refresh``, ...)."""
