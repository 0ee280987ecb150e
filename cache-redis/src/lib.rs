//! Redis implementation of partway's ProgressCache.
