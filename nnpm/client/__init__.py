"""The registry client: the HTTP protocol (api), its error mapping (httperrors), TLS and the packument cache."""
