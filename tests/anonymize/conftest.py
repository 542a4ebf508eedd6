"""Fixtures of the anonymization tests."""

from __future__ import annotations

import secrets

import pytest

from anon_fixtures import make_agreement, make_inputs


@pytest.fixture
def key_hex(monkeypatch):
    value = secrets.token_hex(32)
    monkeypatch.setenv("MOBILITY_KEY_TEST", value)
    return value


@pytest.fixture
def agreement_path(tmp_path, key_hex):
    return make_agreement(tmp_path)


@pytest.fixture
def inputs(tmp_path):
    return make_inputs(tmp_path / "input")
