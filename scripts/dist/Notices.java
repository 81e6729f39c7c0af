import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;
import javax.xml.parsers.DocumentBuilderFactory;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.Node;

/**
 * The third-party notices of the tarball scripts/dist.sh builds (run there as a single-file
 * program: java scripts/dist/Notices.java OUT JAR...). For each bundled jar of the local Maven
 * repository: its coordinates and license(s) from its POM (or the nearest parent POM that names
 * one) in OUT/THIRD-PARTY-NOTICES.txt, and the license and notice files inside the jar's META-INF
 * copied to OUT/licenses/ARTIFACT-VERSION/.
 */
public class Notices {
    record Pom(String group, String artifact, String version, String name, String url, List<String> licenses) {
    }

    public static void main(String[] args) throws Exception {
        Path out = Path.of(args[0]);
        Files.createDirectories(out.resolve("licenses"));
        StringBuilder txt = new StringBuilder();
        txt.append("Third-party software bundled in this Shrink distribution\n")
           .append("=========================================================\n\n")
           .append("The Java runtime (runtime/) is OpenJDK, GPLv2 with the Classpath Exception; its notices are in\n")
           .append("runtime/legal/. lib/native/libtokenizers.so is the native part of DJL's tokenizers jar (Hugging\n")
           .append("Face tokenizers, Apache-2.0), taken out of that jar. Each jar below: its Maven coordinates, its\n")
           .append("license as its POM declares it, and (licenses/ARTIFACT-VERSION/) the license and notice files the\n")
           .append("jar carries in META-INF, where it carries any.\n\n");
        for (int i = 1; i < args.length; i++) {
            Path jar = Path.of(args[i]);
            Path pomFile = Path.of(jar.toString().replaceAll("\\.jar$", ".pom"));
            Pom pom = Files.isRegularFile(pomFile) ? read(pomFile) : null;
            String file = jar.getFileName().toString();
            if (pom == null) {
                txt.append(file).append("\n  (no POM beside the jar)\n\n");
                continue;
            }
            List<String> licenses = pom.licenses();
            Pom p = pom;
            Path repo = repositoryRoot(pomFile, pom);
            for (int depth = 0; licenses.isEmpty() && depth < 8; depth++) {
                Pom parent = parent(repo, p);
                if (parent == null) {
                    break;
                }
                licenses = parent.licenses();
                p = parent;
            }
            List<String> copied = copyLicenseFiles(jar, out.resolve("licenses").resolve(pom.artifact() + "-" + pom.version()));
            txt.append(file).append('\n')
               .append("  ").append(pom.group()).append(':').append(pom.artifact()).append(':').append(pom.version());
            if (!pom.name().isEmpty()) {
                txt.append("  (").append(pom.name()).append(')');
            }
            txt.append('\n');
            if (!pom.url().isEmpty()) {
                txt.append("  ").append(pom.url()).append('\n');
            }
            txt.append("  license: ").append(licenses.isEmpty() ? "not declared in its POM" : String.join("; ", licenses)).append('\n');
            txt.append("  texts: ").append(copied.isEmpty() ? "none inside the jar" : String.join(", ", copied)).append("\n\n");
        }
        Files.writeString(out.resolve("THIRD-PARTY-NOTICES.txt"), txt.toString(), StandardCharsets.UTF_8);
    }

    static List<String> copyLicenseFiles(Path jar, Path dir) throws IOException {
        List<String> copied = new ArrayList<>();
        try (ZipFile z = new ZipFile(jar.toFile())) {
            for (ZipEntry e : z.stream().toList()) {
                String n = e.getName();
                if (e.isDirectory() || !n.startsWith("META-INF/") || n.indexOf('/', 9) >= 0) {
                    continue;
                }
                String base = n.substring(9);
                if (base.toUpperCase().matches(".*(LICEN[CS]E|NOTICE|COPYING).*")) {
                    Files.createDirectories(dir);
                    try (InputStream in = z.getInputStream(e)) {
                        Files.copy(in, dir.resolve(base));
                    }
                    copied.add("licenses/" + dir.getFileName() + "/" + base);
                }
            }
        }
        return copied;
    }

    static Path repositoryRoot(Path pomFile, Pom pom) {
        Path p = pomFile.getParent().getParent().getParent(); // version, artifact
        for (String ignored : pom.group().split("\\.")) {
            p = p.getParent();
        }
        return p;
    }

    static Pom parent(Path repo, Pom child) throws Exception {
        Document d = parse(pomPath(repo, child));
        Element parent = first(d.getDocumentElement(), "parent");
        if (parent == null) {
            return null;
        }
        Path f = pomPath(repo, new Pom(text(parent, "groupId"), text(parent, "artifactId"), text(parent, "version"), "", "", List.of()));
        return Files.isRegularFile(f) ? read(f) : null;
    }

    static Path pomPath(Path repo, Pom p) {
        return repo.resolve(p.group().replace('.', '/')).resolve(p.artifact()).resolve(p.version())
                .resolve(p.artifact() + "-" + p.version() + ".pom");
    }

    static Pom read(Path pomFile) throws Exception {
        Element root = parse(pomFile).getDocumentElement();
        Element parent = first(root, "parent");
        String group = text(root, "groupId");
        if (group.isEmpty() && parent != null) {
            group = text(parent, "groupId");
        }
        String version = text(root, "version");
        if (version.isEmpty() && parent != null) {
            version = text(parent, "version");
        }
        List<String> licenses = new ArrayList<>();
        Element ls = first(root, "licenses");
        if (ls != null) {
            for (Node n = ls.getFirstChild(); n != null; n = n.getNextSibling()) {
                if (n instanceof Element l && l.getTagName().equals("license")) {
                    String name = text(l, "name"), url = text(l, "url");
                    licenses.add(name + (url.isEmpty() ? "" : " <" + url + ">"));
                }
            }
        }
        return new Pom(group, text(root, "artifactId"), version, text(root, "name"), text(root, "url"), licenses);
    }

    static Document parse(Path f) throws Exception {
        DocumentBuilderFactory dbf = DocumentBuilderFactory.newInstance();
        dbf.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        return dbf.newDocumentBuilder().parse(f.toFile());
    }

    static Element first(Element e, String tag) {
        for (Node n = e.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element c && c.getTagName().equals(tag)) {
                return c;
            }
        }
        return null;
    }

    static String text(Element e, String tag) {
        Element c = first(e, tag);
        return c == null ? "" : c.getTextContent().strip().replaceAll("\\s+", " ");
    }
}
