"""Session-wide fixtures: the tiny generated room, made once for every test module that asks for it."""

import pytest


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory):
    """A 48 x 36, 10-view synthetic room (transforms.json layout, depth and label maps); read-only: a test that
    changes it works on a copy."""
    from dff_gs.data.synthetic import generate_scene

    return generate_scene(tmp_path_factory.mktemp("scene") / "room", seed=3, width=48, height=36, num_views=10)
