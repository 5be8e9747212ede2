// Dates in tests are UTC whatever the machine's zone.
process.env.TZ = 'UTC';

module.exports = {
  ...require('./.config/jest.config'),
};
