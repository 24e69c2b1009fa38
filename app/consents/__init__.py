"""Consents: releases of information, and the one check every disclosure goes through."""
