// streamlab patch: a durable object store on the local file system.
//
// object_store's LocalFileSystem refuses two things DynoStore needs:
// `PutMode::Update` (the compare-and-swap of watermarks and group state) and
// attributes (the JSON content type). This wrapper drops the attributes and
// does the compare-and-swap under one lock; that is exact because one broker
// process owns the directory (streamlab locks its work dir). Every write is
// fsync'd, file and directory, before it is acknowledged, so an acknowledged
// produce or offset commit survives a SIGKILL of the broker and an OS crash.

use std::{fmt, ops::Range, path::PathBuf, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
    local::LocalFileSystem, path::Path,
};
use tokio::sync::Mutex;

#[derive(Debug)]
pub(crate) struct LocalStore {
    inner: LocalFileSystem,
    root: PathBuf,
    /// Held by every overwrite and compare-and-swap.
    swap: Arc<Mutex<()>>,
}

impl LocalStore {
    pub(crate) fn new(root: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&root).map_err(|source| object_store::Error::Generic {
            store: "LocalStore",
            source: Box::new(source),
        })?;
        Ok(Self {
            inner: LocalFileSystem::new_with_prefix(&root)?,
            root,
            swap: Arc::new(Mutex::new(())),
        })
    }

    /// fsync of the object's file and of its directory (the rename or link
    /// that made it visible).
    async fn sync(&self, location: &Path) -> Result<()> {
        let mut file = self.root.clone();
        file.extend(location.parts().map(|p| p.as_ref().to_owned()));
        tokio::task::spawn_blocking(move || {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok::<_, std::io::Error>(())
        })
        .await
        .map_err(|e| object_store::Error::Generic { store: "LocalStore", source: Box::new(e) })?
        .map_err(|e| object_store::Error::Generic { store: "LocalStore", source: Box::new(e) })
    }
}

impl fmt::Display for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalStore({})", self.root.display())
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let mode = opts.mode.clone();
        let plain = PutOptions { mode: PutMode::Overwrite, ..Default::default() };
        let result = match mode {
            PutMode::Create => {
                self.inner
                    .put_opts(location, payload, PutOptions { mode: PutMode::Create, ..Default::default() })
                    .await?
            }
            PutMode::Overwrite => {
                let _held = self.swap.lock().await;
                self.inner.put_opts(location, payload, plain).await?
            }
            PutMode::Update(expected) => {
                let _held = self.swap.lock().await;
                let current = self.inner.head(location).await?;
                if current.e_tag != expected.e_tag {
                    return Err(object_store::Error::Precondition {
                        path: location.to_string(),
                        source: format!("{:?} does not match {:?}", current.e_tag, expected.e_tag).into(),
                    });
                }
                self.inner.put_opts(location, payload, plain).await?
            }
        };
        self.sync(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.inner
            .put_multipart_opts(location, PutMultipartOptions { attributes: Default::default(), ..opts })
            .await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let _held = self.swap.lock().await;
        self.inner.copy_opts(from, to, options).await?;
        drop(_held);
        self.sync(to).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let _held = self.swap.lock().await;
        self.inner.rename_opts(from, to, options).await?;
        drop(_held);
        self.sync(to).await
    }
}
