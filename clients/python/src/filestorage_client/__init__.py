"""filestorage_client: the Python client of the FileStorage daemon.

``FileStorage`` has the async API of the in-process component the daemon replaces
(``initialize``, ``store``, ``retrieve``, ``delete``, ``exists``, ``list_keys``,
``get_stats``, ``get_file_storage``, ``initialize_file_storage``), so a service switches by
changing one import; plus ``upload``/``download`` at constant memory, ``stat``,
``iter_keys``, ``list_page``, ``delete_many``, ``read_range`` and ``iter_download``.
"""

from .errors import FileStorageError
from .object_info import ListPage, ObjectInfo
from .storage import FileStorage, get_file_storage, initialize_file_storage

__version__ = "0.1.0"

__all__ = [
    "FileStorage",
    "FileStorageError",
    "ListPage",
    "ObjectInfo",
    "get_file_storage",
    "initialize_file_storage",
]
