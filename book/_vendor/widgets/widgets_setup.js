// Loaded after require.js and before embed-amd.js on pages with widgets (see nb_ipywidgets_js in _config.yml).
(function () {
  // 1. Fonts. @jupyter-widgets/html-manager finds its icon fonts relative to each AMD module's URL, which RequireJS
  //    derives from the module name ("@jupyter-widgets/base", ...) and resolves against the page, so the fonts
  //    would be looked for next to the page. Mapping every module of the bundle to this folder, where the fonts
  //    are, fixes that.
  var dir = document.currentScript.src.replace(/[^/]*([?#].*)?$/, "");
  var names = ["base", "base7", "controls", "controls7", "html-manager"], paths = {};
  names.forEach(function (n) { paths["@jupyter-widgets/" + n] = dir + n; });
  paths["@jupyter-widgets/html-manager/dist/libembed-amd"] = dir + "libembed-amd";
  window.__jupyter_widgets_assets_path__ = dir;
  if (window.requirejs && window.requirejs.config) window.requirejs.config({paths: paths});

  // 2. Math in widget labels. The widgets typeset labels with the MathJax 2 call
  //    MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]); the book loads MathJax 3, which has no Hub, so every
  //    widget with a description threw an error. This bridges the one call to MathJax 3's typesetPromise. Labels
  //    use Jupyter's $...$ delimiters, which the book's MathJax does not look for, so they are rewritten to \(...\)
  //    first. Installed once MathJax 3 has replaced its configuration object (MathJax is a deferred script, so it
  //    has run by DOMContentLoaded).
  function toTeXDelimiters(element) {
    var text = element.textContent;
    if (element.children.length || text.indexOf("$") < 0) return;
    element.textContent = text.replace(/\$\$([^$]+)\$\$/g, "\\[$1\\]").replace(/\$([^$]+)\$/g, "\\($1\\)");
  }
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.startup) return;
    mj.Hub = {
      Queue: function () {
        var elements = [];
        Array.prototype.forEach.call(arguments, function (a) {
          if (Array.isArray(a) && a[0] === "Typeset" && a[2]) elements.push(a[2]);
        });
        elements.forEach(toTeXDelimiters);
        mj.startup.promise.then(function () {
          if (mj.typesetPromise && elements.length) return mj.typesetPromise(elements);
        });
      }
    };
  });
})();
