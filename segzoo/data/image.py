"""Reading images as Detectron2 does, without silently damaging high-bit-depth images, and with
one-line errors for images that do not match their annotations.

Detectron2's ``read_image`` converts with PIL's ``Image.convert``, which *clips* the values of a
16-bit grayscale PNG (mode ``I;16`` / ``I``, common for microscopy, medical and thermal data) to
255: the image comes out nearly all white, with no warning. :func:`read_image` scales such images
to 8 bits first (value / 257, so 65535 -> 255), float images (mode ``F``) from [0, 1], and
otherwise does exactly what Detectron2 does (EXIF orientation, then the format conversion).
:func:`use_segzoo_image_reader` installs it as ``detectron2.data.detection_utils.read_image``, the
function every Detectron2 dataset mapper calls (``segzoo.data`` does so on import).

EXIF orientation: Detectron2 (and this reader) shows a JPEG the way a viewer does, rotated by its
EXIF tag, so annotations must be in that orientation. :func:`size_mismatch_message` turns
Detectron2's size check into an error that says when the EXIF tag is what the sizes disagree on.
An image with a rotation tag whose annotations were made on the stored pixels cannot be detected
when it is square: strip the tag in that case.
"""
import numpy as np
from detectron2.data import detection_utils
from detectron2.utils.file_io import PathManager
from PIL import Image

__all__ = ["read_image", "size_mismatch_message", "to_8bit", "use_segzoo_image_reader"]

_DETECTRON2_READ_IMAGE = detection_utils.read_image
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
EXIF_ORIENTATION = 0x0112
SWAPS_AXES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 or 270 degrees


def to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit (``I;16*``, ``I``) or float (``F``) PIL image as 8-bit grayscale (mode ``L``);
    other images unchanged. 16-bit values are divided by 257 (values past 65535 saturate); float
    values in [0, 1] are multiplied by 255, larger ones taken as 0-255."""
    if image.mode in WIDE_MODES:
        values = np.asarray(image, dtype=np.float64) / 257.0
    elif image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and np.nanmax(values) <= 1.0:
            values = values * 255.0
    else:
        return image
    return Image.fromarray(np.clip(np.nan_to_num(values) + 0.5, 0, 255).astype(np.uint8), mode="L")


def read_image(file_name, format=None):
    """Detectron2's ``read_image`` (same arguments, same result for 8-bit images) with 16-bit and
    float images scaled to 8 bits instead of clipped (:func:`to_8bit`)."""
    with PathManager.open(file_name, "rb") as f:
        image = Image.open(f)
        image = detection_utils._apply_exif_orientation(image)
        return detection_utils.convert_PIL_to_numpy(to_8bit(image), format)


def use_segzoo_image_reader() -> None:
    """Make every Detectron2 mapper (``utils.read_image`` at call time) read with :func:`read_image`."""
    detection_utils.read_image = read_image


def _exif_orientation(file_name) -> int:
    try:
        with PathManager.open(file_name, "rb") as f:
            return int(Image.open(f).getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # no EXIF, or not an image PIL can parse: nothing to add
        return 1


def size_mismatch_message(dataset_dict, image_shape) -> str:
    """One line for an image whose size is not its annotation's: the file changed since the
    annotations were made, or an EXIF rotation tag disagrees with them."""
    name = dataset_dict.get("file_name", "?")
    got_h, got_w = image_shape[:2]
    want = (dataset_dict.get("height"), dataset_dict.get("width"))
    msg = (f"image {name} is {got_w}x{got_h} (width x height) as read, but its annotation says "
           f"{want[1]}x{want[0]}")
    orientation = _exif_orientation(name)
    if orientation in SWAPS_AXES and (got_w, got_h) == (want[0], want[1]):
        return (msg + f": its EXIF orientation tag ({orientation}) rotates it by 90 degrees, and images are read "
                "rotated as viewers show them. Give width / height and coordinates in the rotated orientation, "
                "or strip the tag if the annotations were made on the stored pixels")
    return msg + ": the file changed since the annotations were made, or they are wrong. Fix or remove it"
