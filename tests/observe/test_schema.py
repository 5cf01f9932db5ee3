"""The demo's schema, as clients see it (SDL snapshot). After an intended change:

DJANGO_SETTINGS_MODULE=tests.settings python -c "import django; django.setup();
from schema_examples.schema import schema;
open('tests/snapshots/schema.graphql', 'w').write(schema.as_str() + '\\n')"
"""

from __future__ import annotations

from pathlib import Path

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "schema.graphql"


def test_the_schema_matches_its_snapshot() -> None:
    from schema_examples.schema import schema

    assert schema.as_str() + "\n" == SNAPSHOT.read_text()
