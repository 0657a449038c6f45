"""The dataset format: writer, manifest, reader and exports (see LAYOUT.md)."""
