//! OCI platforms (`os/arch[/variant]`), per the
//! [image index spec](https://github.com/opencontainers/image-spec/blob/main/image-index.md).
