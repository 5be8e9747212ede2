module.exports = {
  SOURCE_DIR: 'src',
  DIST_DIR: 'dist',
};
