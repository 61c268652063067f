//! Docker image references and their normalisation
//! (`busybox:1.35` is `docker.io/library/busybox:1.35`), after
//! [distribution/reference](https://github.com/distribution/reference).
