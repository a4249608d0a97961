"""Map building and reading: the artifact format (reader, writer), embedding, t-SNE build, the exact kNN index, locating new CIFs."""
