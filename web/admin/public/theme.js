// Applies the remembered theme before the first paint (an external file: the CSP forbids inline scripts).
(function () {
  try {
    var t = localStorage.getItem("bkg-admin-theme");
    var dark = t === "dark" || ((t === null || t === "system") && window.matchMedia("(prefers-color-scheme: dark)").matches);
    document.documentElement.classList.toggle("dark", dark);
  } catch {
    /* storage unavailable: keep the light theme */
  }
})();
