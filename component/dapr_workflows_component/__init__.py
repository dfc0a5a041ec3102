"""dapr-workflows component: the engine, its store and its servers."""
