// Stylesheets imported by dependencies mean nothing under jsdom.
module.exports = {};
