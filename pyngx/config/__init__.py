"""The configuration language: parse (syntax), directives (table), build (meaning)."""

from pyngx.config.build import load
from pyngx.config.model import Config

__all__ = ["Config", "load"]
