"""The resource directory: organisations and services advocates refer clients to."""
