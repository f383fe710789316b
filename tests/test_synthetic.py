"""The embedded synthetic DVS digits: deterministic, N-MNIST-like, physically sensible."""
import numpy as np
import pytest

from neuromaml.meta import synthetic as S
from neuromaml.meta.events import EVENT_DTYPE, validate_events

IDX = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def recs():
    return S.synthetic_digit_events(IDX, seed=0)


def test_digits_ship_with_sklearn():
    images, labels = S.load_digit_images()
    assert images.shape == (1797, 8, 8) and images.min() == 0 and images.max() == 1
    assert sorted(S.digit_pools()) == [str(d) for d in range(10)]
    assert sum(v.size for v in S.digit_pools().values()) == 1797


def test_upsample_preserves_constant_and_size():
    up = S.upsample(np.full((2, 8, 8), 0.25, np.float32))
    assert up.shape == (2, 28, 28)
    np.testing.assert_allclose(up, 0.25, rtol=1e-6)


def test_saccade_triangle():
    x, y = S.saccade_offset(np.array([0, 100_000, 200_000, 300_000, 50_000]))
    v = S.SACCADE_VERTICES
    assert (x[0], y[0]) == v[0] and (x[1], y[1]) == v[1] and (x[2], y[2]) == v[2] and (x[3], y[3]) == v[0]
    assert x[4] == pytest.approx((v[0][0] + v[1][0]) / 2) and y[4] == pytest.approx((v[0][1] + v[1][1]) / 2)
    # the moved 28 px image stays on the 34 px sensor
    assert max(max(p) for p in v) + S.IMAGE_PX <= 34


def test_render_integer_shift_is_exact():
    img = np.random.default_rng(0).random((1, 28, 28)).astype(np.float32)
    out = S.render(img, 2.0, 3.0)
    np.testing.assert_array_equal(out[0, 3:31, 2:30], img[0])
    assert out[0, :3].sum() == 0 and out[0, :, :2].sum() == 0


def test_recordings_are_valid_and_nmnist_like(recs):
    for ev in recs:
        assert ev.dtype == EVENT_DTYPE
        validate_events(ev, S.SENSOR_SIZE)  # raises if outside 34x34
        assert (np.diff(ev["t"]) >= 0).all() and ev["t"].max() < 300_000
        # the real N-MNIST sample has 4325 events over 300 ms, about 1/3 per saccade
        assert 1500 < ev.size < 12_000
        per_saccade = np.bincount(ev["t"] // 100_000, minlength=3)
        assert (per_saccade > 0.15 * ev.size).all()
        frac_on = ev["p"].mean()
        assert 0.3 < frac_on < 0.7


def test_deterministic_for_a_seed_and_batch_independent(recs):
    again = S.synthetic_digit_events(IDX, seed=0)
    alone = S.synthetic_digit_events([IDX[2]], seed=0)
    for a, b in zip(recs, again):
        assert a.tobytes() == b.tobytes()
    assert alone[0].tobytes() == recs[2].tobytes()
    other = S.synthetic_digit_events(IDX[:1], seed=1)
    assert other[0].tobytes() != recs[0].tobytes()


def test_shorter_duration_is_exact_prefix(recs):
    short = S.synthetic_digit_events(IDX, seed=0, duration_us=100_000)
    for a, b in zip(recs, short):
        assert a[a["t"] < 100_000].tobytes() == b.tobytes()


def test_events_follow_the_edges():
    """Without noise, events appear only where the moving image changes intensity."""
    params = S.DVSParams(noise_hz=0.0)
    blank = S.simulate_dvs(np.zeros((1, 28, 28), np.float32), [0], 0, 100_000, params)[0]
    assert blank.size == 0
    square = np.zeros((1, 28, 28), np.float32)
    square[0, 10:18, 10:18] = 1.0
    ev = S.simulate_dvs(square, [0], 0, 100_000, params)[0]
    assert ev.size > 0
    # first saccade moves right/down from (1, 1) to (3.5, 5): square spans x 11..21, y 11..23
    assert ev["x"].min() >= 11 and ev["x"].max() <= 21 and ev["y"].min() >= 11 and ev["y"].max() <= 23
    # leading edges brighten (ON), trailing edges darken (OFF)
    on, off = ev[ev["p"] == 1], ev[ev["p"] == 0]
    assert on["x"].mean() > off["x"].mean() and on["y"].mean() > off["y"].mean()


def test_bad_duration():
    with pytest.raises(ValueError):
        S.simulate_dvs(np.zeros((1, 28, 28), np.float32), [0], 0, 400_000)
