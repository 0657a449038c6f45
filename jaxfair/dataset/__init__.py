"""The dataset on disk: shard writer, manifest (plan.json, manifest.json), reader, exports."""
