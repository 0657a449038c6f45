"""Generator images -> classifier inputs, in jnp (jit-able, batched, differentiable).

Pipeline (``preprocess``): generator output ``[N, H, W, 3]`` in about [-1, 1]
  -> clip to [0, 1] (what an 8-bit image file of it would hold)
  -> crop a fixed box and resize to ``size`` in one antialiased resampling
  -> channel order and normalisation of the classifier.

The crop boxes assume FFHQ-aligned generator images (any resolution: boxes are fractions).

**FairFace** was trained on dlib face chips: ``dlib.get_face_chip(img, shape5, size=300,
padding=0.25)`` (5-point landmarks), resized to 224, ImageNet mean/std on RGB in [0, 1].
Both alignments are similarity transforms of dlib's mean face, so the chip is a fixed box in
FFHQ coordinates. dlib's ``get_face_chip_details`` maps the mean-face template (a unit
square, eyes at y = 0.216, mouth corners at y = 0.780) to the chip, which covers template
coordinates ``[-padding, 1 + padding]``. FFHQ's ``recreate_aligned_images`` crops a square
of side ``2 * max(2 * |eye_to_eye|, 1.8 * |eye_to_mouth|)`` centred on
``eye_avg + 0.1 * eye_to_mouth``. On the mean face (template eye centres 0.2255 / 0.7548,
eye-to-eye 0.5293, eye-to-mouth 0.5642) the eye term wins: FFHQ's square has side 2.1171
template units centred at (0.4901, 0.2724). The chip's box in FFHQ fractions is therefore
``(left, top, right, bottom) = (0.1504, 0.2532, 0.8589, 0.9618)``: a 0.709-wide square, lower
than the image centre because dlib's template puts the eyes a fifth of the way down while FFHQ
puts them near the middle (computed by ``dlib_chip_box``; ``FAIRFACE_FFHQ_BOX``).

**DeepFace** ``analyze`` detects the face (default: OpenCV's Haar cascade), crops the
detector box, converts RGB -> BGR, letterbox-resizes to 224; the model sees BGR in [0, 1]
with no mean subtraction (``extract_faces`` already divides by 255, and ``resize_image``
divides only when the maximum exceeds 1, so not again). For the Haar box we assume the
eyes near 31% / 69% of its width and 40% of its height (the centres of the eye-search
regions commonly used inside that cascade's detections; an estimate, not measured here,
and real detections vary by several percent), i.e. width = eye distance / 0.38. With FFHQ's
eye distance of 1/4 of the image and eye height 0.4733 this gives
``DEEPFACE_FFHQ_BOX = (0.1711, 0.2102, 0.8289, 0.8681)`` (``detector_box``). It approximates
a detector that jaxfair does not run: pass another ``CropBox`` (or
``detector_box(eye_x, eye_y)``) where a different detector was used.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# dlib's mean face (get_face_chip_details; the unpadded chip is the unit square): centres of
# the 68-point eyes (means of points 36-41 and 42-47) and of the mouth corners (48, 54), the
# landmarks FFHQ's alignment uses.
DLIB_LEFT_EYE = (0.225492, 0.215990)
DLIB_RIGHT_EYE = (0.754761, 0.215990)
DLIB_MOUTH = (0.490127, 0.780233)


@dataclasses.dataclass(frozen=True)
class CropBox:
    """A crop as fractions of the image: 0 is the left/top edge, 1 the right/bottom edge."""

    left: float
    top: float
    right: float
    bottom: float

    def __post_init__(self):
        if not (0.0 <= self.left < self.right <= 1.0 and 0.0 <= self.top < self.bottom <= 1.0):
            raise ValueError(f"crop box must satisfy 0 <= left < right <= 1 and "
                             f"0 <= top < bottom <= 1, got {self}")


def _ffhq_frame() -> tuple[float, float, float]:
    """FFHQ's crop of the mean face in template units: (centre x, centre y, side)."""
    eye_x = (DLIB_LEFT_EYE[0] + DLIB_RIGHT_EYE[0]) / 2
    eye_y = (DLIB_LEFT_EYE[1] + DLIB_RIGHT_EYE[1]) / 2
    eye_to_eye = DLIB_RIGHT_EYE[0] - DLIB_LEFT_EYE[0]
    eye_to_mouth = DLIB_MOUTH[1] - eye_y
    half = max(2.0 * eye_to_eye, 1.8 * eye_to_mouth)
    return eye_x, eye_y + 0.1 * eye_to_mouth, 2.0 * half


def _to_ffhq(tx: float, ty: float) -> tuple[float, float]:
    cx, cy, side = _ffhq_frame()
    return 0.5 + (tx - cx) / side, 0.5 + (ty - cy) / side


def dlib_chip_box(padding: float = 0.25) -> CropBox:
    """Box of ``dlib.get_face_chip(..., padding)`` in an FFHQ-aligned image (mean face)."""
    left, top = _to_ffhq(-padding, -padding)
    right, bottom = _to_ffhq(1.0 + padding, 1.0 + padding)
    return CropBox(round(left, 6), round(top, 6), round(right, 6), round(bottom, 6))


def detector_box(eye_x: tuple[float, float] = (0.31, 0.69), eye_y: float = 0.40) -> CropBox:
    """Square face-detector box in an FFHQ-aligned image, given where a detector puts the eyes.

    Args:
      eye_x: horizontal positions of the two eye centres as fractions of the box width.
      eye_y: vertical position of the eyes as a fraction of the box height.
    """
    lx, ey = _to_ffhq(*DLIB_LEFT_EYE)
    rx, _ = _to_ffhq(*DLIB_RIGHT_EYE)
    width = (rx - lx) / (eye_x[1] - eye_x[0])
    left = lx - eye_x[0] * width
    top = ey - eye_y * width
    return CropBox(round(left, 6), round(top, 6), round(left + width, 6), round(top + width, 6))


FAIRFACE_FFHQ_BOX = dlib_chip_box(0.25)
DEEPFACE_FFHQ_BOX = detector_box()


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """How one classifier wants its input (hashable: a static jit argument).

    Attributes:
      box: crop, as fractions of the generator image.
      size: side of the square classifier input.
      bgr: reverse the channels (RGB -> BGR) before normalising.
      mean, std: per channel, in the classifier's channel order, on [0, 1] values.
      method: ``jax.image`` resampling kernel, always antialiased ('linear' ~ PIL bilinear).
    """

    box: CropBox
    size: int = 224
    bgr: bool = False
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    method: str = "linear"

    @classmethod
    def fairface(cls, box: CropBox = FAIRFACE_FFHQ_BOX, size: int = 224) -> Preprocess:
        """dlib chip box, RGB, ImageNet mean/std (FairFace's torchvision transforms)."""
        return cls(box, size, False, IMAGENET_MEAN, IMAGENET_STD)

    @classmethod
    def demo(cls, size: int = 64) -> Preprocess:
        """The demo classifier: whole image at its own size, [-1, 1] values (mean/std 0.5)."""
        return cls(CropBox(0.0, 0.0, 1.0, 1.0), size, False, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocess:
        d = dict(d)
        d["box"] = CropBox(**d["box"])
        for k in ("mean", "std"):
            d[k] = tuple(d[k])
        return cls(**d)

    @classmethod
    def deepface(cls, box: CropBox = DEEPFACE_FFHQ_BOX, size: int = 224) -> Preprocess:
        """Detector box, BGR, [0, 1] without mean subtraction (DeepFace ``analyze``)."""
        return cls(box, size, True)


def to_unit_range(images: jax.Array) -> jax.Array:
    """[-1, 1] generator range -> [0, 1], clipped as an 8-bit image file would be."""
    return jnp.clip((images.astype(jnp.float32) + 1.0) * 0.5, 0.0, 1.0)


def crop_resize(images: jax.Array, box: CropBox, size: int, method: str = "linear"
                ) -> jax.Array:
    """Crops ``box`` and resamples it to ``size x size`` with an antialiased kernel.

    One ``scale_and_translate`` pass: sub-pixel box edges are honoured exactly (no rounding
    to whole pixels at any input resolution), and downscaling widens the kernel (antialias).

    Args:
      images: [N, H, W, C] float.
      box: fractions of the image.
      size: output side.

    Returns:
      [N, size, size, C] float32.
    """
    n, h, w, c = images.shape
    y0, y1 = box.top * h, box.bottom * h
    x0, x1 = box.left * w, box.right * w
    sy, sx = size / (y1 - y0), size / (x1 - x0)
    return jax.image.scale_and_translate(
        images.astype(jnp.float32), (n, size, size, c), (1, 2),
        jnp.array([sy, sx], jnp.float32), jnp.array([-y0 * sy, -x0 * sx], jnp.float32),
        method=method, antialias=True)


def normalize(x: jax.Array, spec: Preprocess) -> jax.Array:
    """[0, 1] RGB [N, S, S, 3] -> the classifier's channel order and normalisation."""
    if spec.bgr:
        x = x[..., ::-1]
    mean = jnp.asarray(spec.mean, jnp.float32)
    std = jnp.asarray(spec.std, jnp.float32)
    return (x - mean) / std


def preprocess(images: jax.Array, spec: Preprocess) -> jax.Array:
    """Generator images [N, H, W, 3] in [-1, 1] -> classifier input [N, size, size, 3].

    Example:
      x = preprocess(G.synthesis(ws), Preprocess.fairface())   # [N, 224, 224, 3]
    """
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected NHWC RGB images [N, H, W, 3], got {images.shape}")
    x = crop_resize(to_unit_range(images), spec.box, spec.size, spec.method)
    return normalize(x, spec)
