"""Session-wide fixtures: the tiny generated room, made once for every test module that asks for it."""

import pytest


@pytest.fixture(scope="session")
def tiny_scene(tmp_path_factory):
    """A 48 x 36, 10-view synthetic room (transforms.json layout, depth and label maps); read-only: a test that
    changes it works on a copy."""
    from dff_gs.data.synthetic import generate_scene

    return generate_scene(tmp_path_factory.mktemp("scene") / "room", seed=3, width=48, height=36, num_views=10)


@pytest.fixture()
def saved(tmp_path):
    """Our PLY (MiniLM features of ``tests.test_edit.NAMES``: sofa left, chair right, wall behind; labels teacher)
    and the labels, with a scene named in the sidecar whose view 0 sees them."""
    from dff_gs.io.ply import save_ply
    from tests.test_edit import NAMES, minilm_model, write_scene

    model, labels = minilm_model()
    scene = write_scene(tmp_path / "scene")
    ply = save_ply(model, tmp_path / "m.ply", metadata={"teacher": {"name": "labels", "degrade": True, "text_model":
                                                                    "minilm", "class_names": NAMES},
                                                        "scene": str(scene)})
    return ply, labels
