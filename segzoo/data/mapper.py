"""Detectron2's DatasetMapper, with a clear error for images that cannot be read or do not match
their annotations."""
from detectron2.data import DatasetMapper
from detectron2.data.detection_utils import SizeMismatchError

from ..errors import UserError
from .image import read_image, size_mismatch_message

__all__ = ["CheckedDatasetMapper", "TRAIN_MAPPERS", "build_train_mapper"]


class CheckedDatasetMapper(DatasetMapper):
    """Same as :class:`detectron2.data.DatasetMapper`; an unreadable or missing image, or one whose
    size is not its annotation's (changed since, or rotated by an EXIF tag), raises
    :class:`segzoo.errors.UserError` naming the file instead of a bare PIL/OS error."""

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except SizeMismatchError as e:
            shape = read_image(dataset_dict["file_name"], format=self.image_format).shape
            raise UserError(size_mismatch_message(dataset_dict, shape)) from e
        except (OSError, ValueError, SyntaxError) as e:
            name = dataset_dict.get("file_name", "?")
            if isinstance(e, ValueError) and "image" not in str(e).lower():
                raise
            raise UserError(f"cannot read image {name}: {e}. Fix or remove it from the dataset.") from e


# INPUT.TRAIN_MAPPER name -> fn(cfg) -> mapper for training. Plugins add theirs (e.g. the
# patch sampler of DeepMask / SharpMask); evaluation always uses CheckedDatasetMapper.
TRAIN_MAPPERS = {"default": lambda cfg: CheckedDatasetMapper(cfg, True)}


def build_train_mapper(cfg):
    name = cfg.INPUT.TRAIN_MAPPER
    if name not in TRAIN_MAPPERS:
        raise UserError(f"INPUT.TRAIN_MAPPER: unknown mapper '{name}'; known: {sorted(TRAIN_MAPPERS)}")
    return TRAIN_MAPPERS[name](cfg)
