//! ImageNet-style folders: `split/class_name/*.{jpg,jpeg,png}`, or a flat folder of images.
//!
//! Class ids follow torchvision's `ImageFolder`: class folders sorted by name, id = position.
//! Inside a class folder images are found recursively and sorted by path. Names starting with
//! `.` (e.g. `.ipynb_checkpoints`) are skipped.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::error::{DatasetError, Result};
use crate::io::is_image_file;
pub use crate::io::load_rgb;

/// A labelled ImageFolder.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The split folder that holds one folder per class.
    pub root: PathBuf,
    /// Class names (folder names), sorted; the class id is the index.
    pub classes: Vec<String>,
    /// `(image path, class id)`, ordered by class then path.
    pub samples: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Scans `root`: every non-hidden sub-folder is a class and must hold at least one image.
    ///
    /// Errors: `root` missing or not a folder, no class folders ([`DatasetError::EmptyFolder`]),
    /// a class folder without images ([`DatasetError::EmptyClass`]).
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let mut classes = Vec::new();
        for entry in read_dir_sorted(&root)? {
            if entry.is_dir() {
                classes.push(file_name(&entry));
            }
        }
        if classes.is_empty() {
            return Err(DatasetError::EmptyFolder { path: root });
        }
        let mut samples = Vec::new();
        for (id, class) in classes.iter().enumerate() {
            let dir = root.join(class);
            let mut images = Vec::new();
            collect_images(&dir, &mut images)?;
            if images.is_empty() {
                return Err(DatasetError::EmptyClass {
                    path: dir,
                    class: class.clone(),
                });
            }
            samples.extend(images.into_iter().map(|p| (p, id)));
        }
        Ok(ImageFolder {
            root,
            classes,
            samples,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no images (never true for an opened folder).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The id of a class name.
    pub fn class_id(&self, name: &str) -> Option<usize> {
        self.classes.iter().position(|c| c == name)
    }

    /// Decodes image `index` and returns it with its class id.
    pub fn load(&self, index: usize) -> Result<(RgbImage, usize)> {
        let (path, label) = self.samples.get(index).ok_or_else(|| {
            DatasetError::InvalidConfig(format!(
                "sample index {index} out of range for {} ({} images)",
                self.root.display(),
                self.samples.len()
            ))
        })?;
        Ok((load_rgb(path)?, *label))
    }
}

/// An unlabelled image collection for pretraining: every image below `root`, sorted by path.
///
/// Works on a flat folder of images and on an ImageFolder root alike (labels are ignored).
#[derive(Debug, Clone)]
pub struct UnlabelledFolder {
    /// The folder scanned.
    pub root: PathBuf,
    /// Image paths, sorted.
    pub images: Vec<PathBuf>,
}

impl UnlabelledFolder {
    /// Scans `root` recursively. Errors if it is missing or holds no image.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(DatasetError::NotFound {
                path: root,
                what: "image folder".into(),
            });
        }
        let mut images = Vec::new();
        collect_images(&root, &mut images)?;
        if images.is_empty() {
            return Err(DatasetError::EmptyFolder { path: root });
        }
        Ok(UnlabelledFolder { root, images })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are no images (never true for an opened folder).
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Decodes image `index`.
    pub fn load(&self, index: usize) -> Result<RgbImage> {
        let path = self.images.get(index).ok_or_else(|| {
            DatasetError::InvalidConfig(format!(
                "sample index {index} out of range for {} ({} images)",
                self.root.display(),
                self.images.len()
            ))
        })?;
        load_rgb(path)
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Non-hidden entries of `dir`, sorted by file name.
pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Err(DatasetError::NotFound {
            path: dir.to_path_buf(),
            what: "folder".into(),
        });
    }
    let rd = std::fs::read_dir(dir).map_err(|e| DatasetError::io(dir, e))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DatasetError::io(dir, e))?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

/// All image files below `dir` (recursively, following links, each folder once), sorted by
/// path.
pub(crate) fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    collect_images_inner(dir, out, &mut std::collections::HashSet::new())
}

fn collect_images_inner(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<()> {
    // A link back up the tree would otherwise recurse forever.
    let canonical = std::fs::canonicalize(dir).map_err(|e| DatasetError::io(dir, e))?;
    if !seen.insert(canonical) {
        return Ok(());
    }
    for p in read_dir_sorted(dir)? {
        if p.is_dir() {
            collect_images_inner(&p, out, seen)?;
        } else if is_image_file(&p) {
            out.push(p);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::save_rgb_png;

    fn touch_png(p: &Path) {
        save_rgb_png(p, &RgbImage::new(2, 2)).unwrap();
    }

    #[test]
    fn classes_sorted_and_samples_ordered() {
        let d = tempfile::tempdir().unwrap();
        touch_png(&d.path().join("zebra/b.png"));
        touch_png(&d.path().join("zebra/a.png"));
        touch_png(&d.path().join("ant/x/deep.png"));
        std::fs::write(d.path().join("ant/readme.txt"), "not an image").unwrap();
        touch_png(&d.path().join(".hidden/c.png"));
        let f = ImageFolder::open(d.path()).unwrap();
        assert_eq!(f.classes, vec!["ant", "zebra"]);
        let names: Vec<_> = f
            .samples
            .iter()
            .map(|(p, c)| (p.file_name().unwrap().to_str().unwrap().to_owned(), *c))
            .collect();
        assert_eq!(
            names,
            vec![
                ("deep.png".into(), 0),
                ("a.png".into(), 1),
                ("b.png".into(), 1)
            ]
        );
        assert_eq!(f.load(2).unwrap().1, 1);
        assert!(f.load(3).is_err());

        let u = UnlabelledFolder::open(d.path()).unwrap();
        assert_eq!(u.len(), 3);
    }

    #[cfg(unix)]
    #[test]
    fn link_loops_are_walked_once() {
        let d = tempfile::tempdir().unwrap();
        touch_png(&d.path().join("a/1.png"));
        std::os::unix::fs::symlink(d.path(), d.path().join("a/loop")).unwrap();
        let u = UnlabelledFolder::open(d.path()).unwrap();
        assert_eq!(u.len(), 1);
    }

    #[test]
    fn flat_folder_is_unlabelled() {
        let d = tempfile::tempdir().unwrap();
        touch_png(&d.path().join("1.png"));
        touch_png(&d.path().join("0.png"));
        let u = UnlabelledFolder::open(d.path()).unwrap();
        assert!(u.images[0].ends_with("0.png"));
        // A flat folder has no class folders, so it is not a labelled ImageFolder.
        assert!(matches!(
            ImageFolder::open(d.path()),
            Err(DatasetError::EmptyFolder { .. })
        ));
    }
}
