// Node's "url" as xmlbuilder2 (pulled in by vtk.js) requires it at load time; the
// viewer never parses XML, so the identity stands in for the IDNA functions.
module.exports = { domainToASCII: (d) => d, domainToUnicode: (d) => d, URL: globalThis.URL };
