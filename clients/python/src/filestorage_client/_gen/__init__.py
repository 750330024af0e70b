"""Generated from proto/filestorage/v1/file_storage.proto by clients/python/generate.sh. Do not edit."""
