// The corpus app: served at its root, as the POS is; no remote images. Each bundler's
// build has its own directory (CORPUS_DIST), so both can be built and served at once.
export default {
  distDir: process.env.CORPUS_DIST || ".next",
  images: { remotePatterns: [] },
  poweredByHeader: false,
};
