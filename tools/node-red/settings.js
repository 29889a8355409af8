// Node-RED for the Ponte corpus: on 127.0.0.1 only, on the port given in PORT (0: the
// OS picks; the log says which), its user directory in NODE_RED_USER_DIR, with adminAuth
// (admin / the password in NODE_RED_PASSWORD), and nothing that reaches outside:
// telemetry and its update check off, no palette catalogue or installs, no tours.
const bcrypt = require("bcryptjs");

module.exports = {
  uiHost: "127.0.0.1",
  uiPort: Number(process.env.PORT || 0),
  userDir: process.env.NODE_RED_USER_DIR,
  flowFile: "flows.json",
  credentialSecret: false,
  adminAuth: {
    type: "credentials",
    users: [{ username: "admin", password: bcrypt.hashSync(process.env.NODE_RED_PASSWORD || "senha-corpus", 8), permissions: "*" }],
  },
  diagnostics: { enabled: false, ui: false },
  telemetry: { enabled: false, updateNotification: false },
  externalModules: {
    autoInstall: false,
    palette: { allowInstall: false, allowUpdate: false, allowUpload: false },
    modules: { allowInstall: false },
  },
  editorTheme: {
    tours: false,
    palette: { catalogues: [] },
    projects: { enabled: false },
    multiplayer: { enabled: false },
  },
  logging: { console: { level: "info", metrics: false, audit: false } },
};
