import numpy as np

from cav_core.shapes_world.measure import path_error, read_clip, trajectory_similarity, velocity_similarity
from cav_core.shapes_world.scenes import (BASE_MOTIONS, NOVEL_MOTIONS, Scene, random_scene, render, trajectory,
                                          vocabulary_words)


def test_generator_is_deterministic_by_seed():
    a = [random_scene(np.random.default_rng([3, i])) for i in range(5)]
    b = [random_scene(np.random.default_rng([3, i])) for i in range(5)]
    assert a == b
    assert all(np.array_equal(render(x), render(y)) for x, y in zip(a, b))
    assert not np.array_equal(render(a[0]), render(random_scene(np.random.default_rng([4, 0]))))


def test_caption_grammar():
    s = Scene("red", "square", "white", "left")
    assert s.caption() == "a red square moving left on a white background"
    assert s.caption("moving") == "a red square moving on a white background"
    assert s.caption("") == "a red square on a white background"
    assert Scene("red", "square", "white", "zigzag").caption() == "a red square moving on a white background"
    words = set(vocabulary_words())
    for phrase in BASE_MOTIONS.values():
        assert set(phrase.split()) <= words
    assert not set(NOVEL_MOTIONS) & set(BASE_MOTIONS)


def test_reader_recovers_appearance_and_path():
    for colour, shape, bg in [("red", "square", "white"), ("blue", "circle", "gray"),
                              ("yellow", "triangle", "black"), ("purple", "square", "white")]:
        scene = Scene(colour, shape, bg, "zigzag", size=0.26)
        reading = read_clip(render(scene))
        assert (reading.colour, reading.shape, reading.background) == (colour, shape, bg)
        assert reading.found == 1.0
        assert path_error(reading.trajectory, trajectory(scene)) < 1.0
        assert trajectory_similarity(reading.trajectory, trajectory(scene)) > 0.99


def test_similarity_is_translation_invariant_and_direction_aware():
    right = trajectory(Scene("red", "square", "white", "right"))
    assert trajectory_similarity(right, right + 7) > 0.999
    assert trajectory_similarity(right, trajectory(Scene("red", "square", "white", "left"))) < -0.99
    zig = trajectory(Scene("red", "square", "white", "zigzag"))
    assert trajectory_similarity(zig, right) < 0.95  # a plain pan is not the zigzag


def test_velocity_similarity_separates_novel_paths_from_pans():
    def path(motion):
        return trajectory(Scene("red", "square", "white", motion))

    zig = path("zigzag")
    assert velocity_similarity(zig, zig + 3) > 0.999
    for pan in ("right", "up", "down_right"):
        assert velocity_similarity(zig, path(pan)) < 0.6
    assert velocity_similarity(path("figure_eight"), path("circle")) < 0.6


def test_every_caption_word_is_one_token():
    """A word split into pieces shares them with other words: "orange" and "triangle" once shared
    "an", "g" and "e</w>"."""
    from cav_core.shapes_world.architecture import build_tokenizer

    tokenizer = build_tokenizer()
    split = {w: tokenizer.tokenize(w) for w in vocabulary_words() if len(tokenizer.tokenize(w)) != 1}
    assert not split
    ids = tokenizer("a orange triangle standing still on a gray background").input_ids
    assert len(ids) == 2 + 9 and len(set(ids[1:-1])) == 8  # bos + 9 words + eos; "a" twice
